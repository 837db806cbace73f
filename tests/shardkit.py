"""Sharded runs for tests/test_shard.py: tiny models and data both sides build alike, and the
torchrun worker (``python -m torch.distributed.run ... shardkit.py OUT``) that computes every
case with ``shard=True`` into OUT/<case>.h5 and measures what a sharded engine holds per rank
into OUT/held-<rank>.json (``shardkit.py cli ARGS``: the command line, per rank)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import lossland


def mlp() -> nn.Module:
    torch.manual_seed(0)  # odd widths: some ranks hold a padded row
    return nn.Sequential(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))


def cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Conv2d(3, 5, 3),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 3),
    ).eval()


class Scaled(nn.Module):
    """An MLP times a 0-d parameter (FSDP shards none: it stays whole on every rank)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()
        self.scale = nn.Parameter(torch.tensor(1.5))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) * self.scale  # type: ignore[no-any-return]


def gpt2() -> nn.Module:
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=16,
        n_head=2,
        vocab_size=37,
        n_positions=16,
        attn_implementation="eager",
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config).eval()  # lm_head tied to wte


def with_statistic(model: nn.Module) -> lossland.Directions:
    """Directions that also move a BatchNorm's running mean (a buffer: FSDP shards none)."""
    g = torch.Generator().manual_seed(5)
    moving = [*model.named_parameters(), ("1.running_mean", model.get_buffer("1.running_mean"))]
    x = {n: 0.1 * torch.randn(t.shape, generator=g) for n, t in moving}
    y = {n: 0.1 * torch.randn(t.shape, generator=g) for n, t in moving}
    return lossland.Directions(x=x, y=y)


def pairs(shape: tuple[int, ...], n: int = 24) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def tokens() -> list[dict[str, Tensor]]:
    g = torch.Generator().manual_seed(2)
    out = []
    for _ in range(2):
        ids = torch.randint(0, 37, (2, 8), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    return out


# name -> (model, data, surface keywords)
CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], Any], dict[str, Any]]] = {
    "mlp plane": (mlp, lambda: pairs((6,)), {"x": "-1:1:5", "y": "-1:1:4", "batch_size": 10}),
    "mlp line": (mlp, lambda: pairs((6,)), {"x": "-1:1:7", "batch_size": 5}),  # 5 batches
    "mlp subset": (mlp, lambda: pairs((6,)), {"x": "-1:1:4", "y": "-1:1:3", "params": "2.*"}),
    "mlp sem_target": (  # each point stops on its own: every rank reads every batch
        mlp,
        lambda: pairs((6,)),
        {"x": "-1:1:3", "y": "-1:1:3", "batch_size": 4, "sem_target": 0.05},
    ),
    "mlp seeds": (mlp, lambda: pairs((6,)), {"x": "-1:1:3", "y": "-1:1:3", "seeds": 2}),
    "mlp bf16": (mlp, lambda: pairs((6,)), {"x": "-1:1:3", "y": "-1:1:3", "precision": "bf16"}),
    "scalar parameter": (
        Scaled,
        lambda: pairs((6,)),
        {"x": "-1:1:3", "y": "-1:1:3", "ignore": "none"},
    ),
    "cnn plane": (cnn, lambda: pairs((1, 8, 8)), {"x": "-1:1:4", "y": "-1:1:3", "batch_size": 7}),
    "cnn moving buffer": (
        cnn,
        lambda: pairs((1, 8, 8)),
        {"x": "-1:1:3", "y": "-1:1:3", "directions": with_statistic},
    ),
    "gpt2 plane": (
        gpt2,
        tokens,
        {"x": "-1:1:3", "y": "-1:1:3", "evaluator": lossland.presets.causal_lm()},
    ),
}


def compute(case: str, out: Path | None, **extra: Any) -> lossland.Surface:
    build, data, keywords = CASES[case]
    model = build()
    keywords = {k: v(model) if k == "directions" else v for k, v in keywords.items()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = lossland.surface(
        model, data(), device="cpu", progress=False, out=out, **keywords, **extra
    )
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the model changed"
    return result


def held(shard: int) -> dict[str, Any]:
    """What an engine over a 64-wide MLP holds for the parameters (shards of ``shard`` ranks;
    1: the whole network): bytes of its flat buffer, δ, η and θ* where θ* is not the model's
    own tensors, and whether FSDP's local shards are views of the flat buffer."""
    from lossland.engine import Engine, EngineOptions, eval_data

    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4)
    )
    d = lossland.random_directions(model, seed=0)
    data = eval_data(pairs((64,)), batch_size=8, device=torch.device("cpu"))
    engine = Engine(
        model,
        [d.x, d.y],  # type: ignore[list-item]
        data,
        options=EngineOptions(device=torch.device("cpu"), shard=shard),
    )
    own = {p.untyped_storage().data_ptr() for p in model.parameters()}
    theta = sum(t.nbytes for t in engine.theta if t.untyped_storage().data_ptr() not in own)
    assert engine.dy is not None
    flat = engine.flat.untyped_storage().data_ptr()
    locals_ = [getattr(p, "_local_tensor", p) for p in engine.net.parameters()]
    return {
        "bytes": engine.flat.nbytes + engine.dx.nbytes + engine.dy.nbytes + theta,
        "views": all(t.untyped_storage().data_ptr() == flat for t in locals_),
        "parameters": sum(p.numel() for p in model.parameters()) * 4,
    }


def main(folder: str, groups: str = "") -> None:
    """Every case into ``folder``, then what an engine holds here; with ``groups`` (K), only
    the MLP cases, by groups of K ranks sharing a network (``shard_ranks``)."""
    torch.set_num_threads(1)
    rank = os.environ["RANK"]
    if groups:
        for case in ("mlp plane", "mlp line"):
            compute(case, Path(folder) / f"{case}.h5", shard=True, shard_ranks=int(groups))
        return
    for case in CASES:
        compute(case, Path(folder) / f"{case}.h5", shard=True)
    (Path(folder) / f"held-{rank}.json").write_text(json.dumps(held(int(os.environ["WORLD_SIZE"]))))
    print(f"rank {rank} done")


def cli(args: list[str], cases: list[tuple[str, str]]) -> None:
    """``lossland ARGS`` once per case (drop, add), in one job: on ranks other than 0 without
    the flags in ``drop`` and with those in ``add`` (a mismatch across the ranks)."""
    from lossland.cli import main as lossland_main

    for drop, add in cases:
        mine = args
        if os.environ["RANK"] != "0":
            mine = [a for a in args if a not in drop.split()] + add.split()
        assert lossland_main(mine) != 0


if __name__ == "__main__":
    import shardkit  # the models' classes by their module's name, as the tests import them

    if sys.argv[1] == "cli":  # cli CASES_JSON ARGS...
        shardkit.cli(sys.argv[3:], json.loads(sys.argv[2]))
    else:  # OUT [K]
        shardkit.main(*sys.argv[1:])
