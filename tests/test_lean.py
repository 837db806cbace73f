"""Lean memory (issue 22): a narrow network keeps no grid-dtype copy of its moving tensors
(each point formed in float32 a block of rows at a time, rounded once into the network), and
``memory="lean"`` regenerates random directions from their recipe at every point.

The references are the engines these replace: the narrow network against the engine that kept
a float32 flat buffer, each point anchored from θ* (the exact formula the narrow one applies at
every point); lean against the stored directions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import lossland
from lossland.engine import Engine, EngineOptions, eval_data

CPU = torch.device("cpu")
XS, YS = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3)


def conv() -> nn.Module:
    """A small conv net: 4-D tensors in the channels_last layout, several row blocks each."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 5),
    ).eval()


def images(n: int = 24) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(4)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 5, (n,), generator=g)


def engine(model: nn.Module, d: lossland.Directions, data: Any, **options: Any) -> Engine:
    wide = options.get("dtype", torch.float32)
    low = torch.bfloat16 if options.get("precision") == "bf16" else wide
    cl = options.get("channels_last", False)
    evaluation = eval_data(data, batch_size=12, device=CPU, dtype=low, channels_last=cl)
    return Engine(model, [d.x, d.y], evaluation, options=EngineOptions(device=CPU, **options))  # type: ignore[list-item]


def grid(e: Engine) -> np.ndarray:
    """The whole grid, rows walked as the engine walks them: (rows, columns, len(SUMS))."""
    out = np.zeros((len(YS), len(XS), 0)).tolist()
    for block in e.rows(XS, YS, np.ones((len(YS), len(XS)), dtype=bool)):
        for c, stats in zip(block.cols, block.stats, strict=True):
            out[block.row][c] = stats
    return np.array(out)


def anchored(e: Engine) -> np.ndarray:
    """Each point on its own (a row of one pending point): always anchored from θ*."""
    out = np.zeros((len(YS), len(XS), 0)).tolist()
    for i in range(len(YS)):
        for j in range(len(XS)):
            alone = np.zeros((len(YS), len(XS)), dtype=bool)
            alone[i, j] = True
            (block,) = e.rows(XS, YS, alone)
            out[i][j] = block.stats[0]
    return np.array(out)


# --- a narrow network: no grid-dtype buffer, each point exact ----------------------------------

NARROW = [  # (model, model dtype, engine options, params): θ* narrower than the grid
    ("mlp", torch.bfloat16, {"precision": "bf16"}, None),
    ("mlp", torch.bfloat16, {"precision": "bf16"}, "2.*"),
    ("conv", torch.bfloat16, {"precision": "bf16", "channels_last": True}, None),
    ("conv", torch.bfloat16, {"precision": "bf16", "channels_last": True}, "3.*"),
]


def model_and_data(name: str, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    if name == "conv":
        return conv().to(dtype), images()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 40), nn.Tanh(), nn.Linear(40, 40), nn.Tanh(), nn.Linear(40, 3))
    g = torch.Generator().manual_seed(3)
    data = (torch.randn(36, 6, generator=g), torch.randint(0, 3, (36,), generator=g))
    return net.eval().to(dtype), data


@pytest.mark.parametrize(("name", "dtype", "options", "params"), NARROW)
def test_a_narrow_network_is_each_point_anchored_exactly(
    name: str,
    dtype: torch.dtype,
    options: dict[str, Any],
    params: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The narrow engine's grid equals, bit for bit, the float32-buffer engine's points each
    anchored from θ* (θ* + α·δ + β·η formed in float32 and rounded once: the exact point; that
    engine's steps along a row differ from it by float32 rounding only)."""
    import lossland.engine._engine as engine_module

    model, data = model_and_data(name, dtype)
    d = lossland.random_directions(model, seed=2, params=params)
    monkeypatch.setattr(engine_module, "NARROW_BLOCK", 64)  # several blocks per tensor
    narrow = engine(model, d, data, **options)
    assert narrow.scratch is not None and narrow.scratch.numel() < narrow.layout.size / 4
    assert narrow.flat is narrow.weights and narrow.weights.dtype == torch.bfloat16
    stepped = grid(narrow)
    assert np.array_equal(stepped, anchored(narrow))
    monkeypatch.setattr(Engine, "_narrow", lambda self, net_dtype: False)
    wide = engine(model, d, data, **options)
    assert wide.scratch is None and wide.flat.dtype == options.get("dtype", torch.float32)
    assert np.array_equal(stepped, anchored(wide))
    rel = np.abs(grid(wide) - stepped) / np.maximum(np.abs(stepped), 1e-30)
    assert rel[..., 0].max() < 1e-2  # the old engine's steps: bf16 roundings of float32 sums


@pytest.mark.parametrize(
    ("dtype", "options"),
    [
        (torch.float32, {}),
        (torch.float32, {"dtype": torch.float64}),
        (torch.bfloat16, {"precision": "bf16", "points_per_batch": 2}),
        (torch.float32, {"precision": "bf16"}),  # an fp32 model steps its float32 buffer
    ],
)
def test_a_network_in_the_grid_dtype_or_batched_points_keeps_the_flat_buffer(
    dtype: torch.dtype, options: dict[str, Any]
) -> None:
    model, data = model_and_data("mlp", dtype)
    d = lossland.random_directions(model, seed=2)
    e = engine(model, d, data, **options)
    assert e.scratch is None and e.flat.dtype == options.get("dtype", torch.float32)


# --- memory="lean": random directions redrawn at every point -----------------------------------

GRID: dict[str, Any] = {"x": "-1:1:5", "y": "-0.5:0.5:3", "progress": False}
LEAN = [  # (model, model dtype, surface keywords)
    ("mlp", torch.float32, {}),
    ("mlp", torch.float32, {"params": "2.*"}),
    ("mlp", torch.bfloat16, {"precision": "bf16"}),
    ("mlp", torch.bfloat16, {"precision": "bf16", "params": ["0.*", "4.weight"]}),
    ("mlp", torch.float32, {"precision": "bf16", "norm": "layer", "ignore": "none"}),
    ("conv", torch.float32, {"memory_format": "channels_last"}),
    ("conv", torch.bfloat16, {"precision": "bf16", "norm": "none"}),
]


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Draw blocks of at most 50 elements: most tensors span several blocks (a 40×40 matrix:
    40 blocks of one row; a conv's 72-element rows: one row a block)."""
    import lossland.directions._random as random_module

    monkeypatch.setattr(random_module, "DRAW_BLOCK", 50)
    return 50


@pytest.mark.parametrize(("name", "dtype", "options"), LEAN)
def test_lean_equals_normal(
    name: str, dtype: torch.dtype, options: dict[str, Any], small_blocks: int
) -> None:
    """The same directions (fingerprint) and the same surface: bit for bit where the normal
    engine anchors every point too (a bf16 model), else to float32 rounding (the normal engine
    steps along a row: ≤ 1e-6 relative; an fp32 model under bf16 then rounds those steps to
    bf16, so a weight may land one bf16 step away: the next test shows lean equals the normal
    engine's anchored points bit for bit)."""
    model, data = model_and_data(name, dtype)
    normal = lossland.surface(model, data, **GRID, **options)
    lean = lossland.surface(model, data, memory="lean", **GRID, **options)
    assert lean.attrs["directions_sha256"] == normal.attrs["directions_sha256"]
    assert lean.attrs["directions_info"] == normal.attrs["directions_info"] == {"draw": "rows-50"}
    assert lean.attrs["memory_mode"] == "lean" and normal.attrs["memory_mode"] == "normal"
    assert abs(lean.attrs["cosine"] - normal.attrs["cosine"]) < 1e-12
    if dtype == torch.bfloat16:  # both anchor every point
        assert np.array_equal(lean.loss, normal.loss)
    elif options.get("precision") == "bf16":  # rows stepped in float32, then rounded to bf16
        assert np.allclose(lean.loss, normal.loss, rtol=1e-2, atol=0)
    else:
        assert np.allclose(lean.loss, normal.loss, rtol=1e-6, atol=0)


@pytest.mark.parametrize(("name", "dtype", "options"), LEAN)
def test_lean_points_are_the_normal_engines_anchored_points(
    name: str, dtype: torch.dtype, options: dict[str, Any], small_blocks: int
) -> None:
    """Engine level, bit for bit: lean's grid is the normal engine's points each anchored from
    θ* (stored directions), in float32 or rounded once into a bf16 network."""
    from lossland.directions import lean_directions

    model, data = model_and_data(name, dtype)
    norm, ignore = options.get("norm", "filter"), options.get("ignore", "biasbn")
    spec = options.get("params")
    stored = lossland.random_directions(model, seed=0, norm=norm, ignore=ignore, params=spec)
    meta, regenerate = lean_directions(model, seed=0, norm=norm, ignore=ignore, ndim=2, params=spec)
    assert meta.fingerprint() == stored.fingerprint()
    engine_options = {"precision": options.get("precision", "fp32")}
    normal = engine(model, stored, data, **engine_options)
    wide = torch.bfloat16 if engine_options["precision"] == "bf16" else torch.float32
    evaluation = eval_data(data, batch_size=12, device=CPU, dtype=wide)
    lean = Engine(
        model,
        [meta.x, meta.y],  # type: ignore[list-item]
        evaluation,
        regenerate=regenerate,
        options=EngineOptions(device=CPU, **engine_options),
    )
    assert lean.dx is None and lean.dy is None  # nothing stored
    assert np.array_equal(grid(lean), anchored(normal))


DRAWS = [  # (model, model dtype, norm, ignore, params)
    ("conv", torch.float32, "filter", "biasbn", None),
    ("conv", torch.float32, "layer", "none", None),
    ("conv", torch.bfloat16, "filter", "none", "3.*"),
    ("mlp", torch.float32, "none", "biasbn", None),
    ("mlp", torch.bfloat16, "layer", "biasbn", "!0.*"),
]


@pytest.mark.parametrize("limit", [50, 1 << 22])
@pytest.mark.parametrize(("name", "dtype", "norm", "ignore", "params"), DRAWS)
def test_regenerated_blocks_are_the_stored_directions(
    name: str,
    dtype: torch.dtype,
    norm: Any,
    ignore: Any,
    params: str | None,
    limit: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lossland.directions._random as random_module
    from lossland.directions import lean_directions

    monkeypatch.setattr(random_module, "DRAW_BLOCK", limit)
    model, _ = model_and_data(name, dtype)
    stored = lossland.random_directions(model, seed=7, norm=norm, ignore=ignore, params=params)
    meta, regenerate = lean_directions(
        model, seed=7, norm=norm, ignore=ignore, ndim=2, params=params
    )
    theta = dict(model.named_parameters())
    for axis, group in zip(regenerate, (stored.x, stored.y), strict=True):
        assert group is not None
        for k, (n, t) in enumerate(group.items()):
            blocks = [b.clone() for _, b in axis.tensor(k, theta[n].detach())]
            again = torch.cat(blocks) if t.dim() else blocks[0]
            assert again.dtype == t.dtype and torch.equal(again, t.contiguous()), n
            assert len(blocks) == (
                1 if t.numel() <= limit else -(-t.shape[0] // max(1, limit // t[0].numel()))
            )
    assert meta.fingerprint() == stored.fingerprint()
    assert (stored.info.get("draw") is None) == (limit == 1 << 22)


def test_small_tensors_are_drawn_as_before_the_rule() -> None:
    """Tensors of at most DRAW_BLOCK elements: one randn of the whole tensor, then Li et al.'s
    factor (the draw lossland always made), so fingerprints of existing files still match."""
    model, _ = model_and_data("conv", torch.float32)
    d = lossland.random_directions(model, seed=5, ignore="none")
    g = torch.Generator().manual_seed(5)
    for name, p in model.named_parameters():
        raw = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if p.dim() <= 1:
            expected = p.detach()
        else:
            expected = raw * (
                torch.linalg.vector_norm(
                    p.detach(), dim=(1, 2, 3) if p.dim() == 4 else (1,), keepdim=True
                )
                / torch.linalg.vector_norm(
                    raw, dim=(1, 2, 3) if p.dim() == 4 else (1,), keepdim=True
                )
            )
        assert torch.allclose(d.x[name], expected, rtol=1e-6, atol=0), name
    assert "draw" not in d.info


def test_a_lean_surface_round_trips_its_recipe(tmp_path: Any, small_blocks: int) -> None:
    """from_recipe redraws a lean surface's directions by the rule it records; a file without
    a rule (drawn whole) is redrawn whole even where blocks are smaller now; info shows the
    mode; the resume settings record it, and a lean rerun resumes a normal file."""
    import lossland.directions._random as random_module
    from lossland.analysis import describe
    from lossland.directions import from_recipe

    model, data = model_and_data("mlp", torch.float32)
    out = tmp_path / "lean.h5"
    s = lossland.surface(model, data, memory="lean", out=out, **GRID)
    again = from_recipe(lossland.load(out), model)
    assert again.fingerprint() == s.attrs["directions_sha256"]
    assert again.info == {"draw": "rows-50"}
    assert "memory_mode: lean" in describe(lossland.load(out))
    settings = lossland.load(out).attrs["settings"]
    assert settings["memory"] == "lean"
    random_module.DRAW_BLOCK = 1 << 22  # (the fixture puts it back) a file drawn whole
    whole = lossland.surface(model, data, out=tmp_path / "whole.h5", **GRID)
    assert "draw" not in whole.attrs["directions_info"]
    random_module.DRAW_BLOCK = 50
    assert from_recipe(whole, model).fingerprint() == whole.attrs["directions_sha256"]
    resumed = lossland.surface(model, data, memory="lean", out=tmp_path / "whole.h5", **GRID)
    assert resumed.attrs["points_computed"] == 0


REFUSED = [
    ({"orthogonalize": True}, "orthogonalize"),
    ({"scheme": "linear2x"}, "scheme li"),
    ({"points_per_batch": 2}, "points_per_batch"),
    ({"offload": True}, "offload"),
    ({"seeds": 2}, "seeds"),
    ({"directions": "given"}, "drop directions"),
    ({"shard": True}, "use memory normal with shard"),
]


@pytest.mark.parametrize(("options", "message"), REFUSED)
def test_what_lean_does_not_support_is_one_line_naming_the_fix(
    options: dict[str, Any], message: str
) -> None:
    from helpers import assert_one_line
    from lossland.errors import LosslandError

    model, data = model_and_data("mlp", torch.float32)
    if options.get("directions") == "given":
        options = {"directions": lossland.random_directions(model)}
    with pytest.raises(LosslandError, match=message) as info:
        lossland.surface(model, data, memory="lean", **GRID, **options)
    assert_one_line(str(info.value))
    assert "memory" in str(info.value) or "lean" in str(info.value)


def test_a_complex_tensor_is_refused_in_lean() -> None:
    from lossland.errors import LosslandError

    model = nn.Linear(4, 3)
    model.weight = nn.Parameter(torch.randn(3, 4, dtype=torch.complex64))
    with pytest.raises(LosslandError, match="complex: use memory normal"):
        lossland.surface(model, images(), memory="lean", **GRID)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lean_on_cuda_draws_on_the_cpu(small_blocks: int) -> None:
    """The rule across devices: draws are made on the CPU and copied, so a CUDA lean surface
    has the CPU's directions (fingerprint) and the normal CUDA surface's values."""
    model, data = model_and_data("conv", torch.float32)
    on_cpu = lossland.surface(model, data, memory="lean", device="cpu", **GRID)
    lean = lossland.surface(model, data, memory="lean", device="cuda", **GRID)
    normal = lossland.surface(model, data, device="cuda", **GRID)
    assert lean.attrs["directions_sha256"] == on_cpu.attrs["directions_sha256"]
    assert np.allclose(lean.loss, normal.loss, rtol=1e-5, atol=0)


def test_the_cli_takes_memory_lean(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from faultkit import write_checkpoint, write_data
    from helpers import run_cli

    checkpoint = write_checkpoint(tmp_path / "m.safetensors")
    data = write_data(tmp_path / "data", n=32)
    base = ["surface", checkpoint, "--data-dir", data, "--samples", "16", "--device", "cpu"]
    base += ["--x", "-1:1:3", "--y", "-1:1:3", "--no-progress", "--memory", "lean"]
    code, _, err = run_cli([*base, "-o", tmp_path / "s.h5"], capsys)
    assert code == 0, err
    assert lossland.load(tmp_path / "s.h5").attrs["memory_mode"] == "lean"
    saved = ["--save-directions", tmp_path / "d.safetensors"]
    code, _, err = run_cli([*base, "-o", tmp_path / "t.h5", *saved], capsys)
    assert code == 2 and "--save-directions" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.h5").exists()


@pytest.mark.parametrize(
    ("dtype", "memory", "checked"),
    [
        (torch.float32, "normal", True),
        (torch.float32, "lean", False),
        (torch.bfloat16, "normal", False),
    ],
)
def test_the_fp32_check_of_a_bf16_run_runs_where_it_is_needed(
    dtype: torch.dtype, memory: str, checked: bool
) -> None:
    """A float32 copy of the network checks bf16 runs of wider models; a bf16 model (its own
    precision) and lean memory (which would not hold the copy) record why they skip it."""
    model, data = model_and_data("mlp", dtype)
    s = lossland.surface(model, data, precision="bf16", memory=memory, **GRID)
    check = s.attrs["precision_check"]
    assert ("max_relative" in check) == checked
    assert ("skipped" in check) == (not checked)


def test_the_cost_check_counts_one_working_copy_in_lean() -> None:
    """A model (on the meta device: shapes only) whose four float32 copies exceed this
    machine's memory but whose one bf16 working copy fits: refused normally, run lean."""
    from helpers import assert_one_line
    from lossland.core import host_available
    from lossland.errors import LosslandError
    from lossland.run import SurfaceOptions, check_cost

    available = host_available()
    if available is None:
        pytest.skip("the host's free memory is not known here")
    elements = available // 8  # normal: 4 copies x 4 bytes = 2x; lean bf16: 1 x 2 = 0.25x
    big = nn.Sequential(nn.Linear(elements // 1000, 1000, bias=False, device="meta"))
    with pytest.raises(LosslandError, match="working copies") as info:
        check_cost(big, SurfaceOptions(device="cpu", precision="bf16"), nx=3, ny=3, samples=10)
    assert_one_line(str(info.value))
    lean = SurfaceOptions(device="cpu", precision="bf16", memory="lean")
    check_cost(big, lean, nx=3, ny=3, samples=10)


def test_a_directions_file_keeps_its_draw_rule(tmp_path: Any, small_blocks: int) -> None:
    model, _ = model_and_data("mlp", torch.float32)
    d = lossland.random_directions(model, seed=1)
    path = d.save(tmp_path / "d.safetensors")
    again = lossland.Directions.load(path)
    assert again.info == d.info == {"draw": "rows-50"}
    assert again.fingerprint() == d.fingerprint()
