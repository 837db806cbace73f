"""Permutation alignment: the aligned model computes B's function, a planted permutation is found
exactly, architectures the derivation cannot see through are refused in one line, and the
command writes a checkpoint of B that loads by its own spec."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossland
from helpers import assert_one_line, run_cli, torch_threads
from lossland.compare import AlignOptions, Permutation, align, blend, derive
from lossland.directions import model_directions
from lossland.errors import LosslandError
from lossland.io import ModelSpec, load_checkpoint, save_checkpoint
from lossland.zoo import build_model, load_model, resnet56, small, vgg

# --- the architectures ------------------------------------------------------------------------


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 5)
    )


def tanh_mlp() -> nn.Module:  # no dead units: every unit's activations vary
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 24), nn.Tanh(), nn.Linear(24, 16), nn.Tanh(), nn.Linear(16, 5)
    )


def mlp_norms() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.LayerNorm(32),
        nn.GELU(),
        nn.Dropout(0.1),
        nn.Linear(32, 5),
    )


class ResidualMLP(nn.Module):
    """A residual stream of Linear features: every block's output adds into it."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(64, 16)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(16, 24), nn.SiLU(), nn.Linear(24, 16)) for _ in range(2)
        )
        self.out = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(F.relu(h))


class SharedCNN(nn.Module):
    """GroupNorm, a depthwise conv, functional pooling and one Linear applied twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = nn.GroupNorm(1, 8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(8)
        self.shared = nn.Linear(8, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm(self.conv(x)))
        h = F.silu(self.bn(self.depthwise(h)))
        h = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        h = self.shared(torch.tanh(self.shared(h)))
        return self.head(h)


class TiedLM(nn.Module):
    """Token embeddings tied to the output layer: one tensor under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 12)
        self.up, self.down = nn.Linear(12, 24), nn.Linear(24, 12)
        self.head = nn.Linear(12, 20, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        return self.head(h + self.down(F.gelu(self.up(h))))


def gpt2() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=4, vocab_size=50, n_positions=12, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


IMAGES = (6, 1, 8, 8)
CASES: dict[str, tuple[Callable[[], nn.Module], Any]] = {
    "mlp": (mlp, IMAGES),
    "tanh_mlp": (tanh_mlp, IMAGES),
    "mlp_bn_layernorm": (mlp_norms, IMAGES),
    "residual_mlp": (ResidualMLP, IMAGES),
    "groupnorm_depthwise_shared": (SharedCNN, IMAGES),
    "small_cnn_bn": (lambda: small(width=0.5), (4, 1, 28, 28)),
    "vgg_bn": (lambda: vgg(width=1 / 16), (4, 1, 28, 28)),
    "resnet56_bn_shortcuts": (resnet56, (2, 3, 32, 32)),
    "tied_embeddings": (TiedLM, "ids"),
    "gpt2": (gpt2, "tokens"),
}


def build(name: str, seed: int) -> nn.Module:
    """Case ``name`` with seeded weights and non-trivial normalisation parameters."""
    make, _ = CASES[name]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = make()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.1)
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.running_mean.normal_(0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def inputs(name: str) -> Any:
    shape = CASES[name][1]
    generator = torch.Generator().manual_seed(5)
    if shape == "tokens":
        return {"input_ids": torch.randint(0, 50, (3, 12), generator=generator)}
    if shape == "ids":
        return torch.randint(0, 20, (3, 7), generator=generator)
    return torch.randn(shape, generator=generator)


def output(model: nn.Module, x: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**x).logits if isinstance(x, dict) else model(x)


def max_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def squared_norm(model: nn.Module, groups: Any) -> float:
    keys = {a.key for g in groups for p in g.parts for a in p.axes}
    keys &= {n for n, _ in model.named_parameters()}
    state = model.state_dict()
    return sum(float((state[k].double() ** 2).sum()) for k in keys)


# --- function preservation and planted permutations -------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_the_aligned_model_computes_b(name: str) -> None:
    a, b = build(name, 0), build(name, 1)
    before = copy.deepcopy(b.state_dict())
    with torch_threads(1):
        result = align(a, b)
    x = inputs(name)
    assert max_gap(output(result.model, x), output(b, x)) <= 1e-5
    assert all(torch.equal(v, before[k]) for k, v in b.state_dict().items())  # B untouched
    assert not result.permutation.is_identity()
    assert result.objective_after > result.objective_before
    assert 1 <= result.iterations <= AlignOptions().max_iterations


@pytest.mark.parametrize("name", list(CASES))
def test_a_planted_permutation_is_found_exactly(name: str) -> None:
    a = build(name, 0)
    groups, _ = derive(a)
    planted = Permutation.random(groups, seed=3)
    assert not planted.is_identity()
    b = build(name, 1)
    b.load_state_dict(planted.apply(a.state_dict()))
    x = inputs(name)
    assert max_gap(output(b, x), output(a, x)) <= 1e-5  # the groups are right
    with torch_threads(1):
        result = align(a, b)
    wanted = a.state_dict()
    assert all(torch.equal(v, wanted[k]) for k, v in result.state_dict().items())
    assert result.objective_after == pytest.approx(squared_norm(a, groups), rel=1e-9)


@pytest.mark.parametrize("name", ["tanh_mlp", "gpt2"])
def test_activation_matching_finds_a_planted_permutation(name: str) -> None:
    a = build(name, 0)
    groups, _ = derive(a)
    b = build(name, 1)
    b.load_state_dict(Permutation.random(groups, seed=4).apply(a.state_dict()))
    x = inputs(name)
    data = [x] * 4 if isinstance(x, dict) else (torch.randn(64, *x.shape[1:]), torch.zeros(64))
    result = align(a, b, method="activations", data=data, batch_size=16)
    wanted = a.state_dict()
    assert all(torch.equal(v, wanted[k]) for k, v in result.state_dict().items())
    assert result.objective_after == pytest.approx(1.0, abs=1e-9)  # each unit's own twin
    assert result.objective_before < 0.5


@pytest.mark.parametrize("name", ["mlp_bn_layernorm", "residual_mlp", "small_cnn_bn", "gpt2"])
def test_activation_matching_keeps_b_s_function(name: str) -> None:
    a, b = build(name, 0), build(name, 1)
    x = inputs(name)
    data = [x] * 2 if isinstance(x, dict) else (torch.randn(32, *x.shape[1:]), torch.zeros(32))
    result = align(a, b, method="activations", data=data, batch_size=16)
    assert max_gap(output(result.model, x), output(b, x)) <= 1e-5
    assert result.objective_after > result.objective_before
    assert not a.training and not b.training  # modes restored


def test_groups_of_a_resnet_tie_blocks_and_shortcuts_through_the_stream() -> None:
    groups, untraced = derive(resnet56())
    assert untraced == ()
    # 27 blocks' inner channels, and one residual stream per stage (16, 32, 64 channels).
    assert len(groups) == 27 + 3
    streams = [g for g in groups if len(g.parts[0].axes) > 6]
    assert [g.units for g in streams] == [16, 32, 64]
    keys = {a.key for a in streams[1].parts[0].axes}
    assert "layer2.0.shortcut.0.weight" in keys and "layer2.8.bn2.running_var" in keys


def test_a_flattened_conv_is_read_in_blocks_by_the_linear() -> None:
    groups, _ = derive(small())  # 64 channels of 3x3 positions flattened into Linear(576, 64)
    last_conv = next(g for g in groups if any(a.key == "13.weight" for a in g.parts[0].axes))
    axis = next(a for a in last_conv.parts[0].axes if a.key == "13.weight")
    assert (last_conv.units, axis.dim, axis.block) == (64, 1, 9)


def test_gpt2_permutes_heads_and_mlp_units_and_leaves_the_residual_stream() -> None:
    model = build("gpt2", 0)
    groups, untraced = derive(model)
    assert {g.name: (g.units, g.heads) for g in groups} == {
        "transformer.h.0.attn": (32, 4),
        "transformer.h.0.mlp.c_fc": (128, 1),
        "transformer.h.1.attn": (32, 4),
        "transformer.h.1.mlp.c_fc": (128, 1),
    }
    assert "transformer" in untraced
    moved = {a.key for g in groups for p in g.parts for a in p.axes}
    assert not any("ln_" in k or "wte" in k or "wpe" in k for k in moved)


def test_blend_with_bn_recompute_equals_the_surface_s() -> None:
    a, b = build("small_cnn_bn", 0).double(), build("small_cnn_bn", 1).double()
    generator = torch.Generator().manual_seed(2)
    data = (torch.randn(24, 1, 28, 28, generator=generator).double(), torch.arange(24) % 10)
    sa, sb = a.state_dict(), b.state_dict()
    mid = blend(a, sa, sb, t=0.5, data=data, batch_size=8)
    with torch.no_grad():
        want = float(F.cross_entropy(mid(data[0]), data[1]))
    line = lossland.surface(
        a, data, x=[0.5], directions=model_directions(sa, sb), bn="recompute", batch_size=8,
        dtype="float64", progress=False,
    )  # fmt: skip
    assert line.loss[0] == pytest.approx(want, rel=1e-10)
    assert blend(a, sa, sb, t=0.0, data=data).state_dict()["0.weight"].equal(sa["0.weight"])


# --- refusals ---------------------------------------------------------------------------------


class _Wrap(nn.Module):
    """Linear → the middle module → Linear, on (B, 8) inputs."""

    def __init__(self, middle: nn.Module, width: int = 16) -> None:
        super().__init__()
        self.first, self.middle, self.last = nn.Linear(8, width), middle, nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.middle(torch.relu(self.first(x))))


class _Lambda(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class _Scale(nn.Module):  # a custom layer: its own parameter, used directly
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x)[0]  # the batch as one unbatched sequence


class _Branchy(nn.Module):  # Python control flow on the input: fx cannot trace it
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))) if x.sum() > 0 else self.b(self.a(x))


class _Tokens(nn.Module):  # a Linear over (B, T, F) features, then flatten(1)
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 4), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x.view(-1, 4, 8)).flatten(1))


def _grouped() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.Flatten(), nn.LazyLinear(3)
    )


REFUSED: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "custom op": (
        lambda: _Wrap(_Lambda(lambda h: torch.cumsum(h, -1))),
        "'middle' applies 'cumsum'",
    ),
    "custom layer": (lambda: _Wrap(_Scale()), "'middle' (_Scale) is a layer"),
    "torch attention": (lambda: _Wrap(_Attention()), "'middle.attn' (MultiheadAttention)"),
    "transpose": (lambda: _Wrap(_Lambda(lambda h: h.t().t())), "applies 't'"),
    "concatenation": (lambda: _Wrap(_Lambda(lambda h: torch.cat([h, h], 1)[:, :16])), "'cat'"),
    "slice": (lambda: _Wrap(_Lambda(lambda h: h[:, :8].repeat(1, 2))), "indexes or slices"),
    "reshape": (lambda: _Wrap(_Lambda(lambda h: h.view(-1, 4, 4).flip(1).flatten(1))), "view"),
    "grouped conv": (_grouped, "'2' is a grouped convolution (groups=2)"),
    "group norm in groups": (
        lambda: _Wrap(_Lambda(nn.GroupNorm(4, 16))),
        "(GroupNorm) normalises hidden units together",
    ),
    "unknown rank flatten": (_Tokens, "flattens hidden units in a tensor of unknown rank"),
    "untraceable": (_Branchy, "'_Branchy' cannot be traced"),
    "one layer": (lambda: nn.Linear(8, 3), "no hidden units to permute"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_an_architecture_it_cannot_see_through_is_refused_in_one_line(name: str) -> None:
    make, words = REFUSED[name]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        a, b = make(), make()
    for m in (a, b):
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in m.parameters()):
            m(torch.randn(1, 1, 8, 8))
    with pytest.raises(LosslandError) as caught:
        align(a, b)
    assert_one_line(str(caught.value))
    assert words in str(caught.value)


BAD_CALLS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown method": ({"method": "bogus"}, "unknown method 'bogus'"),
    "no iterations": ({"max_iterations": 0}, "max_iterations must be at least 1"),
    "float iterations": ({"max_iterations": 2.5}, "max_iterations must be a whole number"),
    "negative seed": ({"seed": -1}, "seed must be at least 0"),
    "activations without data": ({"method": "activations"}, "pass data"),
    "weights with data": ({"data": (torch.zeros(2, 64), torch.zeros(2))}, "drop data"),
    "b as a state dict": ({"model_b": "state"}, "model_b must be a torch.nn.Module"),
    "another architecture": ({"model_b": "wider"}, "different models"),
    "a state dict for activations": (
        {"model_a": "state", "method": "activations", "data": (torch.zeros(4, 64), torch.zeros(4))},
        "activation matching runs model_a",
    ),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_arguments_are_one_line_errors(name: str) -> None:
    kwargs, words = BAD_CALLS[name]
    a, b = build("mlp", 0), build("mlp", 1)
    replace = {"state": lambda m: m.state_dict(), "wider": lambda m: nn.Linear(64, 6)}
    for which in ("model_a", "model_b"):
        if which in kwargs:
            kwargs = {**kwargs, which: replace[kwargs[which]](b)}
    models = {"model_a": kwargs.pop("model_a", a), "model_b": kwargs.pop("model_b", b)}
    with pytest.raises(LosslandError) as caught:
        align(models["model_a"], models["model_b"], **kwargs)
    assert_one_line(str(caught.value))
    assert words in str(caught.value)


def test_blend_needs_data_for_batchnorm_and_a_finite_t() -> None:
    a, b = build("small_cnn_bn", 0), build("small_cnn_bn", 1)
    for kwargs, words in (({"t": 0.5}, "pass data"), ({"t": math.nan}, "t must be a finite")):
        with pytest.raises(LosslandError, match=words):
            blend(a, a.state_dict(), b.state_dict(), **kwargs)


def test_a_permutation_applies_only_to_its_model_s_state() -> None:
    groups, _ = derive(build("mlp", 0))
    with pytest.raises(LosslandError, match="the state dict has no tensor"):
        Permutation.random(groups).apply({})
    other = build("tanh_mlp", 0).state_dict(), build("tanh_mlp", 1).state_dict()
    with pytest.raises(LosslandError, match="does not fit the model"):
        blend(build("mlp", 0), *other, t=0.5)


def test_a_permutation_that_splits_heads_is_refused() -> None:
    groups, _ = derive(build("gpt2", 0))
    heads = next(g for g in groups if g.heads > 1)
    perms = dict(Permutation.identity(groups).perms)
    perms[heads.name] = (torch.arange(heads.units).roll(1), torch.arange(heads.units))
    with pytest.raises(LosslandError, match="splits its heads"):
        Permutation(groups, perms)


# --- the command ------------------------------------------------------------------------------

SPEC = ModelSpec("small", {"width": 0.25})


def _checkpoint(path: Path, seed: int) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(SPEC)
    return save_checkpoint(model, path, spec=SPEC, test_accuracy=0.5 + seed)


def test_align_command_writes_b_aligned_with_b_s_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _checkpoint(tmp_path / "a.safetensors", 0), _checkpoint(tmp_path / "b.safetensors", 1)
    out = tmp_path / "b_aligned.safetensors"
    code, stdout, err = run_cli(["align", a, b, "-o", out], capsys)
    assert code == 0, err
    assert "weight matching" in stdout and str(out) in stdout
    aligned, checkpoint = load_model(out)  # its own spec, through the file's metadata
    model_b, _ = load_model(b)
    x = torch.randn(3, 1, 28, 28)
    assert max_gap(output(aligned, x), output(model_b, x)) <= 1e-5
    meta = checkpoint.metadata
    assert meta["test_accuracy"] == 1.5 and meta["model"]["name"] == "small"
    record = meta["alignment"]
    assert record["method"] == "weights" and record["iterations"] >= 1
    assert record["objective_after"] > record["objective_before"]
    assert record["reference_sha256"] == load_checkpoint(a).sha256


def test_align_command_refuses_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _checkpoint(tmp_path / "a.safetensors", 0), _checkpoint(tmp_path / "b.safetensors", 1)
    kept = tmp_path / "kept.safetensors"
    kept.write_bytes(b"mine")
    cases = [
        (["align", a, b, "-o", kept], "exists: pass --overwrite"),
        (["align", a, b, "-o", b], "is also an input"),
        (["align", a, "-o", tmp_path / "x.safetensors"], "takes two checkpoints"),
        (["align", a, b, "--method", "activations", "--data", "nope"], "unknown --data 'nope'"),
        (["align", a, b, "--max-iterations", "0"], "--max-iterations must be at least 1"),
        (["align", a, b, "--samples", "64"], "--samples is read by activation matching only"),
    ]
    for argv, words in cases:
        code, _, err = run_cli(argv, capsys)
        assert code == 2, argv
        assert words in err, err
        assert_one_line(err)
    assert kept.read_bytes() == b"mine"


def test_align_command_by_activations_on_a_data_set(
    tmp_path: Path, fashion_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _checkpoint(tmp_path / "a.safetensors", 0), _checkpoint(tmp_path / "b.safetensors", 1)
    out = tmp_path / "b_aligned.safetensors"
    argv = ["align", a, b, "-o", out, "--method", "activations", "--data-dir", fashion_dir]
    code, stdout, err = run_cli([*argv, "--samples", "all"], capsys)
    assert code == 0, err
    assert "mean correlation of matched units" in stdout
    assert load_checkpoint(out).metadata["alignment"]["method"] == "activations"
