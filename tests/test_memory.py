"""Memory for big models: the ``memory`` attribute of every run, and ``offload`` (θ* on the
host, re-anchored from it once per row), which must give the very same surface."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from faultkit import surface_args, write_checkpoint, write_data
from helpers import assert_one_line, torch_threads
from lossland.cli import main
from lossland.core import MEMORY_KEYS, memory_text
from lossland.directions import random_directions
from lossland.engine import Engine, EngineOptions, eval_data
from lossland.errors import LosslandError
from lossland.io import Surface
from lossland.run import Interrupted, SurfaceOptions, surface

GRID = {"x": "-1:1:5", "y": "-1:1:3", "progress": False, "device": "cpu"}
LINUX = sys.platform.startswith("linux")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def test_memory_attribute_is_stored_with_exact_parameter_bytes(tiny_model, tiny_data, tmp_path):
    out = tmp_path / "s.h5"
    surface(tiny_model, tiny_data, out=out, **GRID)
    memory = Surface.load(out).attrs["memory"]
    assert set(memory) == set(MEMORY_KEYS)
    # conv 1·4·9 + 4, BatchNorm γ and β 4 + 4, linear 64·8 + 8 and 8·3 + 3: 595 float32
    assert memory["param_bytes"] == 595 * 4
    assert memory["device"] == "cpu" and memory["offload"] is False
    assert memory["device_peak_bytes"] is None and memory["device_peak_ratio"] is None
    peak, points = memory["host_peak_bytes"], memory["host_points_peak_bytes"]
    assert memory["host_peak_ratio"] == pytest.approx(peak / (595 * 4))
    if LINUX:  # the peak counter is reset per run, so these are the run's own peaks
        assert memory["host_scope"] == "run"
        assert 0 < memory["host_start_bytes"] <= peak
        assert memory["host_points_ratio"] == pytest.approx(points / (595 * 4))
        assert points <= peak < 64 * 2**30


class Hungry(nn.Module):
    """The tiny model, but every forward also touches a 200 MB temporary."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scratch = torch.ones(50_000_000)  # 200 MB, written page by page
        out: torch.Tensor = self.inner(x) + scratch[:1] - 1.0
        return out


@pytest.mark.skipif(not LINUX, reason="per-run peaks need Linux's resettable peak RSS")
def test_the_points_peak_sees_what_the_evaluation_allocates(tiny_model, tiny_data):
    memory = surface(Hungry(tiny_model), tiny_data, x="-1:1:2", progress=False, device="cpu")
    memory = memory.attrs["memory"]
    added = memory["host_points_peak_bytes"] - memory["host_start_bytes"]
    assert added >= 190e6
    assert memory["host_peak_bytes"] >= memory["host_points_peak_bytes"]
    # and a run without the temporary does not report it: the counter is the run's own
    calm = surface(tiny_model, tiny_data, x="-1:1:2", progress=False, device="cpu")
    assert calm.attrs["memory"]["host_points_peak_bytes"] < memory["host_points_peak_bytes"] - 1e8


@pytest.mark.parametrize(
    ("extra", "dtype"),
    [({}, "float32"), ({"memory_format": "contiguous"}, "float32"), ({}, "float64")],
    ids=["auto-channels-last", "contiguous", "float64-host-copy"],
)
def test_offload_gives_the_bit_identical_surface(tiny_model, tiny_data, extra, dtype):
    normal = surface(tiny_model, tiny_data, dtype=dtype, **GRID, **extra)
    offload = surface(tiny_model, tiny_data, dtype=dtype, offload=True, **GRID, **extra)
    for field in ("loss", "acc", "loss_sem"):
        np.testing.assert_array_equal(getattr(offload, field), getattr(normal, field))
    assert offload.attrs["memory"]["offload"] is True


def test_offload_one_dimensional_line_is_identical(tiny_model, tiny_data):
    normal = surface(tiny_model, tiny_data, x="-1:1:7", progress=False, device="cpu")
    offload = surface(tiny_model, tiny_data, x="-1:1:7", progress=False, device="cpu", offload=True)
    np.testing.assert_array_equal(offload.loss, normal.loss)


def _device_bytes(engine: Engine, device: torch.device) -> int:
    """Bytes of the distinct storages on ``device`` that the engine keeps (its attributes and
    its network's tensors)."""
    found: dict[int, int] = {}

    def visit(value: object) -> None:
        if isinstance(value, torch.Tensor) and value.device == device:
            storage = value.untyped_storage()
            found[storage._cdata] = storage.nbytes()
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    for value in vars(engine).values():
        visit(value)
    visit([*engine.net.parameters(), *engine.net.buffers()])
    return sum(found.values())


def test_offloaded_engine_keeps_no_device_copy_of_theta(tiny_model, tiny_data):
    """On the meta device (a device apart from the host that holds no data): offloaded, the
    engine's device tensors are the working copy and the two directions, θ* stays on the host;
    otherwise θ* is one more copy on the device."""
    meta = torch.device("meta")
    directions = random_directions(tiny_model, seed=0)
    data = eval_data(tiny_data, batch_size=8, device=torch.device("cpu"))
    kept, engines = {}, {}
    for offload in (False, True):
        options = EngineOptions(device=meta, offload=offload)
        engine = Engine(tiny_model, [directions.x, directions.y], data, options=options)
        engine._anchor_(0.5, -0.25)  # re-anchoring works from wherever θ* is
        kept[offload], engines[offload] = _device_bytes(engine, meta), engine
    vector = engines[True].layout.size * 4  # one float32 copy of the moving tensors
    moving = set(engines[True].layout.names)
    fixed = sum(  # the network's tensors that do not move: BatchNorm statistics
        t.numel() * t.element_size()
        for n, t in [*tiny_model.named_parameters(), *tiny_model.named_buffers()]
        if n not in moving
    )
    assert kept[True] == 3 * vector + fixed  # the working copy, δ and η
    assert kept[False] - kept[True] == vector
    assert all(t.device.type == "cpu" for t in engines[True].theta)
    assert engines[True].theta_flat is not None  # a flat host copy: one transfer per row
    assert all(t.device == meta for t in engines[False].theta)


def test_offload_on_the_cpu_reads_the_models_own_tensors(tiny_model, tiny_data):
    """Where the engine runs on the host, offloaded θ* is the model's tensors: no copy at all."""
    directions = random_directions(tiny_model, seed=0)
    data = eval_data(tiny_data, batch_size=8, device=torch.device("cpu"))
    options = EngineOptions(device=torch.device("cpu"), offload=True)
    engine = Engine(tiny_model, [directions.x, directions.y], data, options=options)
    own = {p.data_ptr() for p in tiny_model.parameters()}
    assert engine.theta_flat is None
    assert {t.data_ptr() for t in engine.theta} <= own


def test_offload_option_is_validated(tiny_model, tiny_data):
    with pytest.raises(LosslandError, match="offload is true or false"):
        SurfaceOptions(offload="yes")  # type: ignore[arg-type]
    with pytest.raises(LosslandError, match="scheme li") as info:
        surface(tiny_model, tiny_data, scheme="linear2x", offload=True, **GRID)
    assert_one_line(str(info.value))
    assert "offload" in str(info.value)


class Countdown(nn.Module):
    """Wraps a model; raises KeyboardInterrupt in the forward after ``calls`` forwards. The
    calls are counted outside the model (a closure's cell): lossland puts a model's own state
    back after every point."""

    def __init__(self, inner: nn.Module, calls: int) -> None:
        super().__init__()
        self.inner = inner
        budget = [calls]

        def spend() -> bool:
            budget[0] -= 1
            return budget[0] == -1

        self.spend = spend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spend():
            raise KeyboardInterrupt
        out: torch.Tensor = self.inner(x)
        return out


def test_a_run_interrupted_without_offload_resumes_with_it(tiny_model, tiny_data, tmp_path):
    out = tmp_path / "s.h5"
    reference = surface(Countdown(tiny_model, 10**9), tiny_data, **GRID)
    # Interrupted after the first row (5 points): rows re-anchor from θ*, so the resumed rows
    # are bit-identical (a row resumed midway re-anchors at its first pending point instead).
    with pytest.raises(Interrupted):
        surface(Countdown(tiny_model, 5), tiny_data, out=out, checkpoint_every=1e9, **GRID)
    assert Surface.load(out).done.sum() == 5
    resumed = surface(Countdown(tiny_model, 10**9), tiny_data, out=out, offload=True, **GRID)
    assert resumed.complete and resumed.attrs["points_computed"] == 15 - 5
    np.testing.assert_array_equal(resumed.loss, reference.loss)
    assert Surface.load(out).attrs["memory"]["offload"] is True  # the run that finished it


def test_cli_prints_memory_in_the_summary_and_in_info(tmp_path, capsys):
    data = write_data(tmp_path / "data", n=32)
    checkpoint = write_checkpoint(tmp_path / "m.safetensors")
    out = tmp_path / "s.h5"
    capsys.readouterr()
    assert main(surface_args(checkpoint, out, data, "--offload", grid="-1:1:3")) == 0
    printed = capsys.readouterr().out
    line = next(t for t in printed.splitlines() if t.startswith("memory: "))
    assert "params" in line and "peak host" in line and "device n/a (cpu)" in line
    assert "offload" in line
    assert main(["info", str(out)]) == 0
    info = [t for t in capsys.readouterr().out.splitlines() if t.startswith("memory: ")]
    assert info == [line]


def test_cli_refuses_offload_with_another_scheme(tmp_path, capsys):
    data = write_data(tmp_path / "data", n=16)
    checkpoint = write_checkpoint(tmp_path / "m.safetensors")
    argv = surface_args(checkpoint, tmp_path / "s.h5", data, "--offload", "--scheme", "linear2x")
    capsys.readouterr()
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert_one_line(err)
    assert "--offload" in err and "--scheme li" in err


def test_memory_text_for_a_device_run_and_for_what_is_not_a_report():
    report = dict.fromkeys(MEMORY_KEYS)
    report.update(
        param_bytes=100_000_000,
        device="cuda:0",
        offload=True,
        host_scope="run",
        host_start_bytes=600_000_000,
        host_peak_bytes=900_000_000,
        device_peak_bytes=320_000_000,
        device_points_peak_bytes=310_000_000,
    )
    text = memory_text(report)
    assert text is not None
    assert "params 100 MB" in text and "peak host 900 MB (9× params)" in text
    assert "+300 MB (3× params) over the run's start" in text
    assert "peak device 320 MB (3.2× params) on cuda:0, 310 MB (3.1× params)" in text
    assert text.endswith("offload: θ* on the host")
    assert memory_text({"param_bytes": 1}) is None
    assert memory_text({**report, "host_peak_bytes": "big"}) is None
    assert memory_text("memory") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_offload_saves_one_copy_of_the_parameters_on_the_device():
    """A model on the host: normally θ* is copied to the device (4× the parameters with the
    working copy and the directions); offloaded the device holds 3× plus activations."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(*[nn.Linear(2048, 2048) for _ in range(4)]).eval()
    data = (torch.randn(8, 2048), torch.randint(0, 2048, (8,)))
    grid = {"x": "-1:1:3", "y": "-1:1:2", "progress": False, "device": "cuda"}
    normal = surface(model, data, points_per_batch=1, **grid)
    offload = surface(model, data, offload=True, **grid)
    np.testing.assert_allclose(offload.loss, normal.loss, rtol=1e-6)
    params = normal.attrs["memory"]["param_bytes"]
    n, o = normal.attrs["memory"], offload.attrs["memory"]
    assert o["device_points_peak_bytes"] <= 3.2 * params
    assert n["device_points_peak_bytes"] - o["device_points_peak_bytes"] >= 0.9 * params
