"""A run's cost is estimated and bounded before it starts.

Every kind of run lists what it needs (``lossland.core.check_needs``): memory and disk that
cannot fit are refused, work above ``lossland.core.LIMITS`` needs ``allow_large``, all before
any data is read, lock taken or file written. ``CASES`` is the class as a table: each row is a
command (exit 2, one ``lossland: error:`` line) or an API call (one ``LosslandError``) that must
be refused with the numbers and the fix, leaving no file (hidden ones included).

The rows run in one subprocess under a memory cap (``RLIMIT_AS``: what the process maps at the
start plus ``CAP``) and an alarm per row, so a regression fails instead of exhausting the
machine or running for hours. Other tests prove the opt-in runs (for real above the seeds limit,
and for every other limit with the limit lowered), the disk check, the seed range checked as a
whole, the bound on a stream of unknown length and the checkpoints of a file that is slow to
save.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

import lossland
from faultkit import write_checkpoint, write_data
from helpers import assert_one_line, run_cli, torch_threads
from lossland.core import LIMITS
from lossland.errors import LosslandError
from lossland.io import ModelSpec, Surface

CAP = int(1.5 * 2**30)  # bytes the subprocess may map beyond what it maps at its start
ALARM_S = 60  # a row that runs this long computes what it should have refused
TESTS = Path(__file__).resolve().parent


# --- the world: checkpoints, data, a user data module -------------------------------------------

ENDLESS = """
import torch
from torch.utils.data import DataLoader, IterableDataset


class Endless(IterableDataset):
    '''A stream that never ends: batches of 512 28x28 images.'''

    def __iter__(self):
        while True:
            yield torch.zeros(512, 1, 28, 28), torch.zeros(512, dtype=torch.long)


def factory():
    return DataLoader(Endless(), batch_size=None)
"""


def build_world(folder: Path) -> dict[str, str]:
    """Data, a tiny checkpoint (small width 0.25, 4,050 weights), the small model (61k), VGG
    width 0.25 (1.7 M) and a data module whose loader never ends."""
    write_data(folder / "data", n=64)
    write_checkpoint(folder / "tiny.safetensors")
    write_checkpoint(folder / "b.safetensors", seed=1)
    write_checkpoint(folder / "c.safetensors", seed=2)
    write_checkpoint(folder / "small.safetensors", spec=ModelSpec("small", {}))
    write_checkpoint(folder / "vgg.safetensors", spec=ModelSpec("vgg", {"width": 0.25}))
    (folder / "endless.py").write_text(ENDLESS)
    return {
        "folder": str(folder),
        "data": str(folder / "data"),
        "tiny": str(folder / "tiny.safetensors"),
        "b": str(folder / "b.safetensors"),
        "c": str(folder / "c.safetensors"),
        "small": str(folder / "small.safetensors"),
        "vgg": str(folder / "vgg.safetensors"),
    }


# --- the API rows: each must raise LosslandError --------------------------------------------------


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))


def tiny_pair(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 8, 8, generator=generator), torch.randint(0, 3, (n,))


class Endless(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Batches of 256 8x8 images, forever (what an unbounded IterableDataset yields)."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield torch.zeros(256, 1, 8, 8), torch.zeros(256, dtype=torch.long)


class Huge(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A map-style dataset whose len() is a billion (reading it would take days)."""

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(1, 8, 8), torch.tensor(0)


def api_surface(folder: Path, **kwargs: Any) -> None:
    data = kwargs.pop("data", None)
    lossland.surface(
        tiny_model(),
        tiny_pair() if data is None else data,
        out=folder / "out.h5",
        progress=False,
        **kwargs,
    )


API: dict[str, Callable[[Path], object]] = {
    "seeds 100,000": lambda f: api_surface(f, x="-1:1:3", y="-1:1:3", seeds=100_000),
    "seed range": lambda f: api_surface(f, x="-1:1:3", seeds=3, seed=2**63 - 2),
    "seeds 0": lambda f: api_surface(f, x="-1:1:3", seeds=0),
    "grid 10,000²": lambda f: api_surface(f, x="-1:1:10000", y="-1:1:10000"),
    "refine 4001²": lambda f: api_surface(f, x="-1:1:4001", y="-1:1:4001", refine=0.05),
    "line of 1e6 x 1,024 samples": lambda f: api_surface(f, x="-1:1:1000000", data=tiny_pair(1024)),
    "len() of a billion": lambda f: api_surface(f, x="-1:1:3", data=Huge()),
    "K 4096 points per batch": lambda f: lossland.surface(
        nn.Linear(2000, 2000),
        (torch.zeros(4, 2000), torch.zeros(4, dtype=torch.long)),
        x="-1:1:5",
        points_per_batch=4096,
        progress=False,
        out=f / "out.h5",
    ),
    "endless IterableDataset": lambda f: api_surface(f, x="-1:1:3", data=Endless()),
    "endless DataLoader, streamed": lambda f: api_surface(
        f, x="-1:1:3", data=DataLoader(Endless(), batch_size=None), data_mode="streamed"
    ),
    "endless stream, samples 1e12": lambda f: api_surface(
        f, x="-1:1:3", data=Endless(), samples=10**12
    ),
    "endless generator": lambda f: api_surface(f, x="-1:1:3", data=(b for b in Endless())),
    "hessian probes 1e9": lambda f: lossland.hessian_report(
        tiny_model(), tiny_pair(), probes=10**9, progress=False
    ),
    "hessian endless data": lambda f: lossland.hessian_report(
        tiny_model(), Endless(), progress=False
    ),
    "spectrum probes 1e9": lambda f: lossland.hessian_spectrum(
        tiny_model(), tiny_pair(), probes=10**9, progress=False
    ),
    "paths 12 x 100,000 steps": lambda f: lossland.analysis.descend_all(
        lossland.analysis.surface_grid(bowl()),
        starts=[(0.1 * i, 0.1) for i in range(-6, 6)],
        steps=100_000,
        progress=False,
    ),
    "PCA of 100,000 checkpoints": lambda f: lossland.pca_directions(
        tiny_model().state_dict(), [f / f"step_{i}.safetensors" for i in range(100_000)]
    ),
    "PCA reading 2,000 VGG checkpoints": lambda f: lossland.pca_directions(
        lossland.build_model(ModelSpec("vgg", {"width": 0.5})).state_dict(),
        [f / f"step_{i}.safetensors" for i in range(2_000)],
    ),
}


def bowl() -> Surface:
    x = np.linspace(-1, 1, 11)
    surface = Surface.empty(x, x, split="train")
    grid = 1.0 + x[None, :] ** 2 + x[:, None] ** 2
    surface.store(Ellipsis, {"loss": grid, "acc": grid * 0, "loss_sem": grid * 0.01})
    return surface


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...] = ()  # a command ({tiny}, {data}, ... from the world; {out}, {folder})
    expect: tuple[str, ...] = ()  # words the one error line holds (numbers and the fix)

    @property
    def api(self) -> bool:
        return not self.argv


SURFACE = ("surface", "{tiny}", "-o", "{out}", "--data-dir", "{data}", "--samples", "32")
SURFACE += ("--no-progress",)
HESSIAN = ("hessian", "--data-dir", "{data}", "--no-progress")
LARGE = ("--allow-large",)
CASES = [
    # surfaces, lines, seed stacks, refinement, interpolation (the command line)
    Case("cli seeds 100,000", (*SURFACE, "--x", "-1:1:3", "--seeds", "100000"),
         ("100,000 seeds", "--seeds")),
    Case("cli grid 10,000²", (*SURFACE, "--x", "-1:1:10000", "--y", "-1:1:10000"),
         ("10,000 x 10,000", "GB of host memory", "available", "--x or --y")),
    Case("cli refine 4001²", (*SURFACE, "--x", "-1:1:4001", "--y", "-1:1:4001", "--refine", "0.05"),
         ("4,001 x 4,001", "--x or --y")),
    Case("cli seed at the top", (*SURFACE, "--x", "-1:1:3", "--seeds", "2", "--seed",
                                 str(2**63 - 1)),
         ("9223372036854775808", "--seed", "9223372036854775806")),
    Case("cli line of 1e6 points x 1,024 samples", (*SURFACE, "--x", "-1:1:1000000", "--samples",
                                                     "1024"),
         ("line of 1,000,000 points x 1,024 samples", "1.02e9 sample evaluations", *LARGE)),
    Case("cli interpolate a 5,000² plane", ("interpolate", "{tiny}", "{b}", "{c}", "-o", "{out}",
                                            "--data-dir", "{data}", "--x", "0:1:5000"),
         ("5,000 x 5,000", "--x or --y")),
    Case("cli interpolate line x 1e6 points, 1,024 samples",
         ("interpolate", "{tiny}", "{b}", "-o", "{out}", "--data-dir", "{data}",
          "--x", "0:1:1000000", "--samples", "1024"),
         ("1.02e9 sample evaluations", *LARGE)),
    Case("cli K 4096 points per batch (VGG)",
         ("surface", "{vgg}", "-o", "{out}", "--data-dir", "{data}", "--x", "-1:1:5",
          "--points-per-batch", "4096", "--device", "cpu"),
         ("12,289 working copies", "--points-per-batch", "GB of host memory")),
    Case("cli --samples beyond the split", (*SURFACE, "--x", "-1:1:3", "--samples", "1000000"),
         ("--samples 1000000", "64 samples")),
    Case("cli endless user DataLoader", (*SURFACE[:6], "--x", "-1:1:3", "--data",
                                         "endless:factory"),
         ("had not ended after", "--samples N")),
    # the Hessian report and its density (the small model: 61k weights)
    Case("cli hessian --steps 1e9", ("hessian", "{small}", *HESSIAN[1:], "--density", "-o",
                                     "{folder}/h.json", "--steps", "1000000000"),
         ("61,", "Lanczos vectors", "--steps")),
    Case("cli hessian --iterations 1e9", ("hessian", "{small}", *HESSIAN[1:], "--iterations",
                                          "1000000000"),
         ("Lanczos vectors", "--iterations")),
    Case("cli hessian --probes 1e9", ("hessian", "{tiny}", *HESSIAN[1:], "--probes",
                                      "1000000000"),
         ("trace probes", "--probes")),
    Case("cli hessian --probes-density 1e9", ("hessian", "{tiny}", *HESSIAN[1:], "--density",
                                              "-o", "{folder}/h.json", "--probes-density",
                                              "1000000000"),
         ("sample evaluations", "--probes-density", *LARGE)),
    Case("cli hessian --k 3000 --iterations 3000", ("hessian", "{small}", *HESSIAN[1:], "--k",
                                                     "3000", "--iterations", "3000"),
         ("3,000 Lanczos vectors", "--iterations")),
    Case("cli hessian -o without --density", ("hessian", "{tiny}", *HESSIAN[1:], "-o",
                                              "{folder}/h.json"),
         ("-o", "--density")),
    # optimizer paths on a stored surface
    Case("cli path 12 starts x 100,000 steps", ("path", "{folder}/bowl.h5", "-o", "{out}.csv",
                                               *[f"--start=0.{i},0.1" for i in range(6)] * 2,
                                               "--steps", "100000", "--no-progress"),
         ("12 paths x 100,000 steps", "1,200,000 optimizer steps", "--start", *LARGE)),
    # the API equivalents
    Case("seeds 100,000", expect=("100,000 seeds", "fewer seeds")),
    Case("seed range", expect=("seed", str(2**63), "seeds")),
    Case("seeds 0", expect=("at least 2 seeds",)),
    Case("grid 10,000²", expect=("10,000 x 10,000", "host memory")),
    Case("refine 4001²", expect=("4,001 x 4,001",)),
    Case("line of 1e6 x 1,024 samples", expect=("1.02e9 sample evaluations", "allow_large")),
    Case("len() of a billion", expect=("1,000,000,000 samples", "samples")),
    Case("K 4096 points per batch", expect=("points_per_batch", "host memory")),
    Case("endless IterableDataset", expect=("had not ended after", "samples N")),
    Case("endless DataLoader, streamed", expect=("had not ended after", "samples N")),
    Case("endless generator", expect=("had not ended after", "samples N")),
    Case("endless stream, samples 1e12", expect=("1,000,000,000,000 samples", "allow_large")),
    Case("hessian probes 1e9", expect=("trace probes", "probes")),
    Case("hessian endless data", expect=("had not ended after",)),
    Case("spectrum probes 1e9", expect=("sample evaluations", "allow_large")),
    Case("paths 12 x 100,000 steps", expect=("12 paths x 100,000 steps", "allow_large")),
    Case("PCA of 100,000 checkpoints", expect=("100,000 checkpoints", "Gram", "pca_runs")),
    Case("PCA reading 2,000 VGG checkpoints", expect=("checkpoint bytes read", "allow_large")),
]  # fmt: skip


# --- the runner: every row in one capped subprocess ------------------------------------------


class _Alarm(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _Alarm


def run_cases(world: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every row (in this process, capped by the caller): outcome, lines and files left."""
    from lossland.cli import main

    signal.signal(signal.SIGALRM, _on_alarm)
    results: dict[str, dict[str, Any]] = {}
    for case in CASES:
        folder = Path(world["folder"]) / "cases" / case.name.replace(" ", "_")
        folder.mkdir(parents=True)
        values = {**world, "folder": str(folder), "out": str(folder / "out.h5")}
        if case.argv and case.argv[0] == "path":
            bowl().save(folder / "bowl.h5")
        before = set(os.listdir(folder))
        started = time.perf_counter()
        signal.alarm(ALARM_S)
        try:
            results[case.name] = _run_one(case, values, folder, main)
        except _Alarm:
            results[case.name] = {"outcome": "still running after the alarm"}
        finally:
            signal.alarm(0)
        results[case.name]["seconds"] = time.perf_counter() - started
        results[case.name]["left"] = sorted(set(os.listdir(folder)) - before)
    return results


def _run_one(
    case: Case, values: dict[str, str], folder: Path, main: Callable[[list[str]], int]
) -> dict[str, Any]:
    if case.api:
        try:
            API[case.name](folder)
        except LosslandError as exc:
            return {"outcome": "error", "message": str(exc)}
        except MemoryError:
            return {"outcome": "MemoryError"}
        return {"outcome": "ran"}
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([a.format(**values) for a in case.argv])
        except MemoryError:
            return {"outcome": "MemoryError"}
    return {"outcome": "exit", "code": code, "stderr": err.getvalue()}


RUNNER = """
import json, resource, sys
sys.path[:0] = [{tests!r}, {world!r}]
import torch
import test_trust_cost
import lossland.cli
torch.set_num_threads(1)
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
mapped = int(status["VmSize"].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (mapped + {cap}, mapped + {cap}))
print(json.dumps(test_trust_cost.run_cases(json.loads({world_json!r}))))
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    with torch_threads(1):
        return build_world(tmp_path_factory.mktemp("cost"))


@pytest.fixture(scope="module")
def results(world: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every row's outcome, from one subprocess under the memory cap."""
    code = RUNNER.format(
        tests=str(TESTS), world=world["folder"], cap=CAP, world_json=json.dumps(world)
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOSSLAND_")}
    environ.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environ,
        cwd=world["folder"],
        timeout=ALARM_S * len(CASES),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_before_any_work(results: dict[str, dict[str, Any]], case: Case) -> None:
    """One line with the numbers and the fix; exit 2 (command) or LosslandError (API); no
    file left, hidden ones included."""
    got = results[case.name]
    if case.api:
        assert got["outcome"] == "error", got
        message = got["message"]
    else:
        assert got["outcome"] == "exit" and got["code"] == 2, got
        lines = got["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lossland: error: "), got["stderr"]
        message = lines[0]
    assert_one_line(message)
    for words in case.expect:
        assert words in message, message
    assert got["left"] == [], got["left"]


# --- the opt-in runs ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def test_allow_large_runs_101_seeds(world: dict[str, str], tmp_path: Path, capsys: Any) -> None:
    """Above the limit of 100 seeds, --allow-large runs the stack (a 2-point line on 8
    samples: cheap), and leaves the stack alone, no per-seed file."""
    out = tmp_path / "seeds.h5"
    argv = ["surface", world["tiny"], "-o", out, "--data-dir", world["data"], "--x", "-1:1:2"]
    argv += ["--samples", "8", "--seeds", "101", "--no-progress"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "--allow-large" in err
    assert os.listdir(tmp_path) == []
    code, _, err = run_cli([*argv, "--allow-large"], capsys)
    assert code == 0, err
    assert os.listdir(tmp_path) == ["seeds.h5"]
    stack = Surface.load(out).stack
    assert stack is not None and len(stack.seeds) == 101 and stack.complete


LOWERED = [
    ("grid points", lambda large: api_run(x="-1:1:5", y="-1:1:5", allow_large=large)),
    ("sample evaluations", lambda large: api_run(x="-1:1:5", allow_large=large)),
    ("seeds", lambda large: api_run(x="-1:1:2", seeds=4, allow_large=large)),
    (
        "sample evaluations",
        lambda large: lossland.hessian_report(
            tiny_model(), tiny_pair(), k=1, probes=2, allow_large=large, progress=False
        ),
    ),
    (
        "sample evaluations",
        lambda large: lossland.hessian_spectrum(
            tiny_model(), tiny_pair(), probes=1, steps=5, k=1, allow_large=large, progress=False
        ),
    ),
    (
        "optimizer steps",
        lambda large: lossland.analysis.descend_all(
            lossland.analysis.surface_grid(bowl()),
            starts=[(0.5, 0.5)],
            steps=10,
            allow_large=large,
            progress=False,
        ),
    ),
]


def api_run(**kwargs: Any) -> Surface:
    return lossland.surface(tiny_model(), tiny_pair(8), progress=False, **kwargs)


@pytest.mark.parametrize(("unit", "run"), LOWERED, ids=[f"{u} {i}" for i, (u, _) in
                                                        enumerate(LOWERED)])  # fmt: skip
def test_allow_large_passes_every_limit(
    monkeypatch: pytest.MonkeyPatch, unit: str, run: Callable[[bool], object]
) -> None:
    """Each limit, lowered under a cheap run: refused without allow_large, run with it."""
    monkeypatch.setitem(LIMITS, unit, 3)
    with pytest.raises(LosslandError, match=rf"{unit}.*allow_large"):
        run(False)
    assert run(True) is not None


def test_pca_reads_above_the_limit_run_with_allow_large(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs = tmp_path / "run"
    runs.mkdir()
    for step in range(3):
        write_checkpoint(runs / f"step_{step:07d}.safetensors", seed=step + 1)
    state = lossland.load_checkpoint(runs / "step_0000002.safetensors").state_dict
    monkeypatch.setitem(LIMITS, "checkpoint bytes read", 1000)
    with pytest.raises(LosslandError, match=r"checkpoint bytes read.*allow_large"):
        lossland.trajectory_plane(state, [runs])
    assert lossland.trajectory_plane(state, [runs], allow_large=True).directions.kind == "pca"


# --- the rest of the mechanism ----------------------------------------------------------------


def test_a_full_disk_is_refused_before_any_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lossland.core import _cost

    monkeypatch.setattr(_cost, "free_disk", lambda folder: 1e6)
    with pytest.raises(
        LosslandError,
        match=r"disk full: .* disk space in .*: free space there, or use fewer points",
    ) as info:
        api_run(x="-1:1:301", y="-1:1:301", out=tmp_path / "s.h5")
    assert_one_line(str(info.value))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("seed", "seeds", "ok"),
    [(2**63 - 3, 3, True), (2**63 - 2, 3, False), (2**63 - 1, 2, False), (0, 2, True)],
)
def test_the_seed_range_is_checked_as_a_whole(
    tmp_path: Path, seed: int, seeds: int, ok: bool
) -> None:
    """seed + seeds - 1 must be a seed, checked before the first seed's run (which would leave
    its hidden file behind)."""
    out = tmp_path / "s.h5"
    if ok:
        assert api_run(x="-1:1:2", seeds=seeds, seed=seed, out=out).stack is not None
        assert os.listdir(tmp_path) == ["s.h5"]
        return
    with pytest.raises(LosslandError, match="past the largest seed"):
        api_run(x="-1:1:2", seeds=seeds, seed=seed, out=out)
    assert os.listdir(tmp_path) == []


def test_a_stream_is_bounded_and_samples_n_reads_its_first_n() -> None:
    """An endless stream with samples=N: its first N samples, once per point."""
    result = lossland.surface(tiny_model(), Endless(), x="-1:1:3", samples=300, progress=False)
    assert result.complete and result.attrs["samples"] == 300


def test_a_slow_save_spaces_the_checkpoints(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """checkpoint_every=0 with a file slow to save (0.06 s, the slow-save threshold lowered to
    0.05 s): after a save of t seconds the next waits 10·t, instead of one save per row."""
    from lossland.run import _driver

    monkeypatch.setattr(_driver, "SLOW_SAVE_S", 0.05)
    saves: list[float] = []
    original = Surface.save

    def slow(self: Surface, path: Any, **kwargs: Any) -> Path:
        saves.append(time.monotonic())
        time.sleep(0.06)
        return original(self, path, **kwargs)

    monkeypatch.setattr(Surface, "save", slow)
    api_run(x="-1:1:60", y="-1:1:60", out=tmp_path / "s.h5", checkpoint_every=0.0)
    gaps = np.diff(saves[:-2])  # the last two: the final checkpoint and the figures' save
    assert len(saves) < 30, len(saves)  # one per row would be 60
    assert (gaps >= 0.6).all(), gaps


def test_the_per_point_figures_hold_for_real_surfaces(tmp_path: Path) -> None:
    """The file of a filled 300 x 300 surface (and of a 3-seed stack of it) is within the
    estimate (a point's bytes, and FILE_OVERHEAD for the rest: here under 0.1 MB) and not far
    below it; the arrays a run holds fit the bytes counted a point."""
    from lossland.core import _cost
    from lossland.io import SeedStack

    x = np.linspace(-1, 1, 300)
    surface = Surface.empty(x, x, split="train")
    values = 1.0 + x[None, :] ** 2 + x[:, None] ** 2
    surface.store(
        Ellipsis, {"loss": values, "acc": values, "loss_sem": values * 0.01, "samples": values}
    )
    points = values.size
    arrays = sum(a.nbytes for a in (surface.loss, surface.acc, surface.loss_sem, surface.done))
    assert arrays + surface.samples.nbytes <= 0.5 * _cost.SURFACE_BYTES * points  # type: ignore[union-attr]
    one = surface.save(tmp_path / "one.h5").stat().st_size
    assert 0.8 * _cost.FILE_BYTES * points <= one <= _cost.FILE_BYTES * points + 1e5
    stack = SeedStack(
        (0, 1, 2), *(np.stack([a] * 3) for a in (values, values, values)),
        np.ones((3, *values.shape), dtype=bool), ({}, {}, {}),
    )  # fmt: skip
    three = replace_stack(surface, stack).save(tmp_path / "three.h5").stat().st_size
    assert three - one <= 3 * _cost.SEED_FILE_BYTES * points


def replace_stack(surface: Surface, stack: Any) -> Surface:
    from dataclasses import replace

    return replace(surface, stack=stack)
