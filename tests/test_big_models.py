"""Big models (issue 22): parameter subsets (``params``: globs, ``"trainable"``, a function) in
every verb, the working copy sharing what does not move, and the recipe recording the subset.

Each surface is checked against a direct computation: a deep copy of the model moved by hand
along the chosen tensors only, evaluated with the same loss."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lossland
from faultkit import surface_args, write_checkpoint, write_data
from helpers import assert_one_line, run_cli
from lossland.analysis import describe
from lossland.core import host_rss, select_params
from lossland.directions import from_recipe, hessian_eigen, model_directions
from lossland.engine import Engine, EngineOptions, eval_data
from lossland.errors import LosslandError, SurfaceFileError

GRID: dict[str, Any] = {"x": "-1:1:5", "y": "-0.5:0.5:3", "progress": False}
POINTS = [(0, 0), (1, 3), (2, 4), (2, 2)]  # (row, column): corners, inside, the centre


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 3)
    ).eval()


def pair(n: int = 40) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def moved(model: nn.Module, d: lossland.Directions, a: float, b: float) -> nn.Module:
    net = copy.deepcopy(model)
    with torch.no_grad():
        for name, t in net.named_parameters():
            if name in d.x:
                t.add_(d.x[name].to(t.dtype), alpha=a)
                if d.y is not None:
                    t.add_(d.y[name].to(t.dtype), alpha=b)
    return net


def check_points(s: lossland.Surface, d: lossland.Directions, loss: Callable[..., float]) -> None:
    assert s.y is not None
    for i, j in POINTS:
        expected = loss(moved(s_model(s), d, float(s.x[j]), float(s.y[i])))
        assert s.loss[i, j] == pytest.approx(expected, rel=1e-5, abs=1e-7), (i, j)


_MODELS: dict[int, nn.Module] = {}


def s_model(s: lossland.Surface) -> nn.Module:
    return _MODELS[id(s)]


def ce(data: tuple[Tensor, Tensor]) -> Callable[[nn.Module], float]:
    def loss(net: nn.Module) -> float:
        with torch.no_grad():
            return float(F.cross_entropy(net(data[0]), data[1]))

    return loss


def state_bytes(model: nn.Module) -> dict[str, bytes]:
    return {
        k: v.detach().clone().contiguous().numpy().tobytes() for k, v in model.state_dict().items()
    }


# --- the one resolver --------------------------------------------------------------------------

RESOLVE = [
    ("4.*", ["4.weight", "4.bias"]),
    (["0.*", "4.weight"], ["0.weight", "0.bias", "4.weight"]),
    ("*.weight", ["0.weight", "2.weight", "4.weight"]),
    (["*.weight", "!2.*"], ["0.weight", "4.weight"]),
    ("!*.bias", ["0.weight", "2.weight", "4.weight"]),
    ((lambda n, t: t.dim() == 1 and not n.startswith("0")), ["2.bias", "4.bias"]),
    (None, None),
    ([], None),
]


@pytest.mark.parametrize(("spec", "names"), RESOLVE)
def test_a_spec_resolves_to_the_moving_names(spec: Any, names: list[str] | None) -> None:
    assert select_params(spec, mlp().named_parameters()) == names


def test_trainable_is_the_tensors_that_require_grad() -> None:
    model = mlp()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("2."))
    assert select_params("trainable", model.named_parameters()) == ["2.weight", "2.bias"]


REFUSED = [
    ("nothing.*", "match none of the model's 6 tensors"),
    (["!*"], "match none"),
    ([""], "takes glob patterns"),
    ([3], "takes glob patterns"),
    ((lambda n, t: False), "match none"),
    ((lambda n, t: 1 / 0), "raised ZeroDivisionError on 0.weight"),
]


@pytest.mark.parametrize(("spec", "message"), REFUSED)
def test_a_spec_choosing_nothing_is_one_line_naming_the_fix(spec: Any, message: str) -> None:
    with pytest.raises(LosslandError, match=message) as info:
        lossland.surface(mlp(), pair(), params=spec, **GRID)
    assert_one_line(str(info.value))
    assert "params" in str(info.value)


def test_trainable_with_nothing_trainable_is_refused() -> None:
    model = mlp().requires_grad_(False)
    with pytest.raises(LosslandError, match="requires grad") as info:
        lossland.surface(model, pair(), params="trainable", **GRID)
    assert_one_line(str(info.value))


# --- surfaces on a subset equal a direct computation ------------------------------------------

SURFACES = [
    ("4.*", ["4.weight", "4.bias"]),
    (["*.weight", "!0.*"], ["2.weight", "4.weight"]),
    ((lambda n, t: n.startswith("2.")), ["2.weight", "2.bias"]),
]


@pytest.mark.parametrize(("spec", "names"), SURFACES)
@pytest.mark.parametrize("ignore", ["biasbn", "none"])
def test_a_subset_surface_equals_a_direct_computation(spec: Any, names: list[str], ignore: Any):
    model, data = mlp(), pair()
    before = state_bytes(model)
    s = lossland.surface(model, data, params=spec, ignore=ignore, seed=4, **GRID)
    _MODELS[id(s)] = model
    d = from_recipe(s, model)  # the recipe redraws the very same directions (fingerprint)
    assert list(d.x) == names and d.params == tuple(names) and s.attrs["params"] == names
    check_points(s, d, ce(data))
    assert state_bytes(model) == before  # the user's model, byte for byte


def test_only_the_chosen_tensors_move_and_the_others_are_shared() -> None:
    model, data = mlp(), pair()
    d = lossland.random_directions(model, params="2.*", seed=1)
    options = EngineOptions(device=torch.device("cpu"))
    engine = Engine(
        model,
        [d.x, d.y],
        eval_data(data, batch_size=64, device=torch.device("cpu")),
        options=options,
    )  # type: ignore[list-item]
    assert engine.layout.names == ("2.weight", "2.bias")
    own = dict(model.named_parameters())
    for name, t in engine.net.named_parameters():
        shared = t.data_ptr() == own[name].data_ptr()
        assert shared == (not name.startswith("2.")), name
        assert not own[name].requires_grad or t.requires_grad is False


def test_a_forward_writing_a_shared_parameter_is_refused() -> None:
    class Writes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, x: Tensor) -> Tensor:
            self.a.weight.mul_(1.0)  # in place, same values
            return self.b(torch.tanh(self.a(x)))

    with pytest.raises(LosslandError, match=r"wrote its parameter a\.weight in place") as info:
        lossland.surface(Writes(), pair(), params="b.*", **GRID)
    assert_one_line(str(info.value))


def test_sharing_shows_in_the_measured_memory() -> None:
    """A 64 MB model, its last layer moving: the engine adds the subset's bytes (a working copy
    and two directions), not the model's."""
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(2048, 2048) for _ in range(4)], nn.Linear(2048, 8))
    size = sum(p.numel() * 4 for p in model.parameters())
    data = eval_data(
        (torch.randn(8, 2048), torch.randint(0, 8, (8,))), batch_size=8, device=torch.device("cpu")
    )
    d = lossland.random_directions(model, params="4.*", seed=0)
    before = host_rss()[0] or 0
    engine = Engine(model, [d.x, d.y], data, options=EngineOptions(device=torch.device("cpu")))  # type: ignore[list-item]
    grown = (host_rss()[0] or 0) - before
    unshared = sum(
        t.untyped_storage().nbytes()
        for t in engine.net.parameters()
        if t.data_ptr() not in {p.data_ptr() for p in model.parameters()}
    )
    assert unshared < 0.01 * size
    assert grown < 0.25 * size, (grown, size)


# --- LoRA on GPT-2: "trainable" ----------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_gpt2() -> tuple[nn.Module, list[dict[str, Tensor]]]:
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=61,
        n_positions=16,
        attn_implementation="eager",
        bos_token_id=0,
        eos_token_id=0,
    )
    base = transformers.GPT2LMHeadModel(config)
    lora = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn"], lora_dropout=0.0, fan_in_fan_out=True
    )
    model = peft.get_peft_model(base, lora)
    with torch.no_grad():  # LoRA's B starts at zero: give the adapter weights
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 61, (4, 12), generator=g)
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}]
    return model.eval(), batches


def test_lora_trainable_surface_equals_the_model_own_loss(lora_gpt2) -> None:
    model, batches = lora_gpt2
    before = state_bytes(model)
    s = lossland.surface(
        model, batches, params="trainable", evaluator=lossland.presets.causal_lm(), **GRID
    )
    _MODELS[id(s)] = model
    d = from_recipe(s, model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert list(d.x) == trainable and all("lora_" in n for n in trainable)

    def own_loss(net: nn.Module) -> float:
        with torch.no_grad():
            return float(net(**batches[0]).loss)

    check_points(s, d, own_loss)
    assert state_bytes(model) == before
    assert [n for n, p in model.named_parameters() if p.requires_grad] == trainable


# --- the recipe: from_recipe, resume, info ----------------------------------------------------


def test_the_recipe_round_trips_through_the_file(tmp_path: Path) -> None:
    model, data = mlp(), pair()
    out = tmp_path / "s.h5"
    s = lossland.surface(model, data, params=["*.weight", "!0.*"], out=out, **GRID)
    loaded = lossland.Surface.load(out)
    d = from_recipe(loaded, model)
    assert list(d.x) == ["2.weight", "4.weight"]
    assert d.fingerprint() == s.attrs["directions_sha256"]
    assert "params: ['2.weight', '4.weight']" in describe(loaded)
    again = lossland.surface(model, data, params=["*.weight", "!0.*"], out=out, **GRID)
    assert again.attrs["points_computed"] == 0  # resumed: the same run
    with pytest.raises(SurfaceFileError, match="params") as info:
        lossland.surface(model, data, params="4.*", out=out, **GRID)
    assert_one_line(str(info.value))


def test_seeds_move_the_subset_only() -> None:
    model, data = mlp(), pair()
    s = lossland.surface(model, data, params="4.*", seeds=2, **GRID)
    assert s.attrs["params"] == ["4.weight", "4.bias"]
    for seed in (0, 1):
        d = lossland.random_directions(model, params="4.*", seed=seed)
        assert list(d.x) == ["4.weight", "4.bias"]


# --- the other verbs: between models, the Hessian ---------------------------------------------


def test_between_models_on_a_subset() -> None:
    a, b = mlp(), mlp()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.1)
    d = model_directions(a.state_dict(), b.state_dict(), params="2.*")
    assert list(d.x) == ["2.weight", "2.bias"] and d.params == ("2.weight", "2.bias")
    s = lossland.surface(a, pair(), directions=d, x="0:1:3", progress=False)
    with torch.no_grad():
        mixed = copy.deepcopy(a)
        mixed[2].load_state_dict(b[2].state_dict())
    assert s.loss[-1] == pytest.approx(ce(pair())(mixed), rel=1e-5)


def test_given_directions_are_restricted_to_the_subset() -> None:
    model = mlp()
    d = lossland.random_directions(model, seed=2)
    s = lossland.surface(model, pair(), directions=d, params="0.*", **GRID)
    assert s.attrs["params"] == ["0.weight", "0.bias"]
    _MODELS[id(s)] = model
    check_points(s, d.restricted(["0.weight", "0.bias"]), ce(pair()))


def test_the_hessian_of_a_subset_is_its_block() -> None:
    model, (x, t) = mlp(), pair()
    op, pairs = hessian_eigen(model, (x, t), params="4.*", k=2, progress=False, iterations=60)
    assert op.names == ("4.weight", "4.bias")
    p4 = dict(model.named_parameters())
    w, b = p4["4.weight"].detach(), p4["4.bias"].detach()

    def loss(flat: Tensor) -> Tensor:
        hidden = model[:4](x)
        weight, bias = flat[: w.numel()].view_as(w), flat[w.numel() :]
        return F.cross_entropy(hidden @ weight.T + bias, t)

    block = torch.autograd.functional.hessian(loss, torch.cat([w.reshape(-1), b]))
    top = torch.linalg.eigvalsh(block.double()).flip(0)[:2].numpy()
    assert np.allclose(pairs.values, top, rtol=1e-4, atol=1e-7)


# --- the command line ----------------------------------------------------------------------------


def test_the_cli_takes_repeated_params(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = write_checkpoint(tmp_path / "m.safetensors")
    data = write_data(tmp_path / "data", n=32)
    out = tmp_path / "s.h5"
    argv = surface_args(checkpoint, out, data, "--params", "*.weight", "--params", "!features.*")
    code, _, err = run_cli([*argv, "--x", "-1:1:3", "--y", "-1:1:3"], capsys)
    assert code == 0, err
    names = lossland.Surface.load(out).attrs["params"]
    assert names and all(n.endswith(".weight") and not n.startswith("features") for n in names)
    code, _, err = run_cli([*argv[:-4], "--params", "nope.*", "--overwrite"], capsys)
    assert code == 2 and "--params" in err and len(err.strip().splitlines()) == 1


# --- suffix caching: a stack's fixed prefix recorded once per batch, replayed ------------------


class Parallel(nn.Module):
    """A ModuleList used in parallel, not in sequence: replaying would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleList([nn.Linear(6, 3) for _ in range(3)])

    def forward(self, x: Tensor) -> Tensor:
        return sum((head(x) for head in self.heads), torch.zeros(()))


def deep() -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(6, 16)]
    for _ in range(5):
        layers += [nn.Tanh(), nn.Linear(16, 16)]
    return nn.Sequential(*layers, nn.Tanh(), nn.Linear(16, 3)).eval()


def tiny_gpt2(layers: int = 4) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=layers,
        n_embd=32,
        n_head=2,
        vocab_size=61,
        n_positions=16,
        attn_implementation="eager",
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config).eval()


def token_batches() -> list[dict[str, Tensor]]:
    g = torch.Generator().manual_seed(2)
    out = []
    for _ in range(2):
        ids = torch.randint(0, 61, (3, 10), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    return out


def chunks_of(data: tuple[Tensor, Tensor], size: int = 20) -> list[tuple[Tensor, Tensor]]:
    return list(zip(data[0].split(size), data[1].split(size), strict=True))


def rows_of(model: nn.Module, data: Any, spec: Any, mode: str, **kw: Any) -> tuple[Engine, Any]:
    d = lossland.random_directions(model, params=spec, seed=5)
    evaluation = eval_data(data, batch_size=20, device=torch.device("cpu"), mode=mode)  # type: ignore[arg-type]
    engine = Engine(
        model,
        [d.x, d.y],  # type: ignore[list-item]
        evaluation,
        options=EngineOptions(device=torch.device("cpu")),
        **kw,
    )
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3)
    stats = np.zeros((3, 5, len(lossland.core.SUMS)))
    for block in engine.rows(xs, ys, np.ones((3, 5), dtype=bool)):
        stats[block.row, block.cols] = block.stats
    return engine, stats


SUFFIXES = [
    ("sequential", deep, "12.*", "", 12, None),
    ("sequential, two blocks", deep, ["10.*", "12.*"], "", 10, None),
    ("gpt2 last block", tiny_gpt2, "transformer.h.3.*", "transformer.h", 3, "causal_lm"),
    ("gpt2 last two", tiny_gpt2, "transformer.h.[23].*", "transformer.h", 2, "causal_lm"),
]


@pytest.mark.parametrize(("case", "build", "spec", "stack", "k", "preset"), SUFFIXES)
def test_suffix_caching_equals_the_full_forward(case, build, spec, stack, k, preset) -> None:
    model = build()
    data = token_batches() if preset else chunks_of(pair(60))
    kw = {"evaluator": lossland.presets.causal_lm()} if preset else {}
    cached, fast = rows_of(model, data, spec, "cached", **kw)
    streamed, full = rows_of(model, data, spec, "streamed", **kw)
    assert cached.suffix is not None and streamed.suffix is None
    assert (cached.suffix.where, cached.suffix.k, cached.suffix.on) == (stack, k, True)
    assert len(cached.suffix.recorded) == (2 if preset else 3)  # one per batch
    assert np.allclose(fast, full, rtol=1e-6, atol=0), case


@pytest.mark.parametrize(("case", "build", "spec", "stack", "k", "preset"), SUFFIXES)
def test_unit_losses_replay_each_batch_s_own_prefix(case, build, spec, stack, k, preset) -> None:
    """The per-unit losses behind paired barrier errors read, batch by batch, that batch's
    recorded prefix: equal to the full forward's at every point."""
    model = build()
    data = token_batches() if preset else chunks_of(pair(60))
    kw = {"evaluator": lossland.presets.causal_lm()} if preset else {}
    cached, _ = rows_of(model, data, spec, "cached", **kw)
    streamed, _ = rows_of(model, data, spec, "streamed", **kw)
    assert cached.suffix is not None and cached.suffix.on
    for alpha, beta in [(0.0, 0.0), (-1.0, 0.5), (0.5, -0.5)]:
        for got, want in zip(
            cached.unit_losses(alpha, beta), streamed.unit_losses(alpha, beta), strict=True
        ):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, err_msg=case)


NO_SUFFIX = [
    ("moving outside the stack", tiny_gpt2, "transformer.ln_f.*"),
    ("tied to the embedding", tiny_gpt2, "transformer.wte.weight"),
    ("the first block moves", tiny_gpt2, "transformer.h.0.*"),
    ("every tensor", deep, None),
]


@pytest.mark.parametrize(("case", "build", "spec"), NO_SUFFIX)
def test_no_suffix_where_the_prefix_moves(case, build, spec) -> None:
    model = build()
    preset = build is tiny_gpt2
    data = token_batches() if preset else pair(60)
    kw = {"evaluator": lossland.presets.causal_lm()} if preset else {}
    engine, _ = rows_of(model, data, spec, "cached", **kw)
    assert engine.suffix is None, case


def test_a_stack_used_in_parallel_is_caught_at_the_first_batch() -> None:
    model = Parallel().eval()
    engine, stats = rows_of(model, chunks_of(pair(60)), "heads.2.*", "cached")
    assert engine.suffix is not None and not engine.suffix.on  # checked, then run in full
    _, full = rows_of(model, chunks_of(pair(60)), "heads.2.*", "streamed")
    assert np.array_equal(stats, full)


# --- lean memory: a bf16 model's θ* is read where it is -----------------------------------------


def test_a_bf16_model_theta_and_directions_are_not_copied_and_the_surface_is_the_same() -> None:
    low = deep().to(torch.bfloat16)
    wide = copy.deepcopy(low).float()  # the same values, exactly
    d = lossland.random_directions(low, params="1[02].*", seed=3)
    cpu = torch.device("cpu")
    data = eval_data(chunks_of(pair(60)), batch_size=20, device=cpu, dtype=torch.bfloat16)
    options = EngineOptions(device=cpu, precision="bf16")
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3)
    wide_d = {k: {n: t.float() for n, t in g.items()} for k, g in (("x", d.x), ("y", d.y))}  # type: ignore[union-attr]
    results = []
    for model in (low, wide):
        given = [d.x, d.y] if model is low else [wide_d["x"], wide_d["y"]]
        engine = Engine(model, given, data, options=options)  # type: ignore[arg-type]
        results.append([b.stats for b in engine.rows(xs, ys, np.ones((3, 5), dtype=bool))])
        own = dict(model.named_parameters())
        same = [t.data_ptr() == own[n].data_ptr() for n, t in zip(d.x, engine.theta, strict=True)]
        assert all(same)  # the model's own tensors: bf16 ones, or fp32 ones on an fp32 grid
        shared = [t.data_ptr() == own[n].data_ptr() for n, t in engine.net.named_parameters()]
        assert any(shared) == (model is low)  # frozen bf16 parameters shared with the bf16 net
        # bf16 directions stay bf16 (adopted as drawn: no copy); fp32 ones fp32
        assert engine.dx.dtype == (torch.bfloat16 if model is low else torch.float32)
        assert (engine.dx.data_ptr() == d.x["10.weight"].data_ptr()) == (model is low)
    assert all(np.array_equal(a, b) for a, b in zip(*results, strict=True))


def test_the_hessian_cli_takes_params(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = write_checkpoint(tmp_path / "m.safetensors")
    data = write_data(tmp_path / "data", n=32)
    saved = tmp_path / "eig.safetensors"
    base = ["hessian", checkpoint, "--data-dir", data, "--samples", "16", "--device", "cpu"]
    argv = [*base, "--k", "2", "--probes", "0", "--iterations", "8", "--no-progress"]
    argv += ["--save-directions", saved]
    code, _, err = run_cli([*argv, "--params", "15.*", "--params", "13.weight"], capsys)
    assert code == 0, err
    d = lossland.Directions.load(saved)
    assert list(d.x) == ["13.weight", "15.weight", "15.bias"] == list(d.params or ())
    code, _, err = run_cli([*base, "--params", "nope.*"], capsys)
    assert code == 2 and "--params" in err and len(err.strip().splitlines()) == 1


def test_the_cost_check_counts_the_moving_tensors_only() -> None:
    """A 160 GB model (on the meta device: shapes only) cannot fit this machine; its last layer
    moving can: the engine copies the moving tensors only."""
    from lossland.run import SurfaceOptions, check_cost

    big = nn.Sequential(nn.Linear(200_000, 200_000, device="meta"), nn.Linear(200_000, 2))
    options = SurfaceOptions(device="cpu")
    with pytest.raises(LosslandError, match="working copies") as info:
        check_cost(big, options, nx=3, ny=3, samples=10)
    assert_one_line(str(info.value))
    check_cost(big, SurfaceOptions(device="cpu", params="1.*"), nx=3, ny=3, samples=10)


def test_pca_on_a_subset_is_the_pca_of_its_trajectory() -> None:
    from lossland.directions import pca_directions

    final = mlp()
    g = torch.Generator().manual_seed(7)
    states = [
        {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in final.state_dict().items()}
        for _ in range(4)
    ]
    d = pca_directions(final.state_dict(), states, params="2.*")
    assert list(d.x) == ["2.weight", "2.bias"] and d.params == ("2.weight", "2.bias")
    cut = {k: v for k, v in final.state_dict().items() if k.startswith("2.")}
    alone = pca_directions(cut, [{k: s[k] for k in cut} for s in states])
    for name in cut:  # the same components as a PCA of those tensors alone
        assert torch.allclose(d.x[name], alone.x[name], atol=1e-6)
