"""Big models (issue 22): what a run costs when only part of a model moves, side by side.

Three sections, each printed as a markdown table:

* ``suffix``: a 12-block GPT-2-shaped model (random init, fp32) with only its last block moving.
  Per point: a bare forward (the floor without lossland), lossland with the stack's fixed prefix
  replayed (data cached on the device: the default), and lossland running every block (the same
  data streamed, which turns replaying off); the ratio to the bare forward, and how far the
  replayed surface is from the full one (max relative difference over the timed points).
* ``layers``: the same 12-block GPT-2 shape, one landscape per block in one call
  (``surface(params_per_layer="auto")``, a line of ``--points`` points per block) and its
  time; then each block's engine per point once it has recorded the prefix (the fastest of
  ``--rounds`` rows) against the fastest bare forward timed just before, next to (12 − k)/12,
  the share of the blocks it runs.
* ``llm``: a Qwen2-shaped decoder built from a config (random init, bf16, ``precision="bf16"``),
  each mode in a fresh process (peaks are process-wide): every tensor moving (``all``; ``all
  lean``: ``memory="lean"``, the directions redrawn at every point), the last block moving
  (``params``), and a PEFT LoRA adapter (``params="trainable"``). Memory added by the run
  (host peak − the resident set when it started, which holds the model and the data) as a
  multiple of the model's parameter bytes, from ``attrs["memory"]``; then the time per point of
  the same engine (after its first point, which records the prefix).

    python benchmarks/big_models.py suffix
    python benchmarks/big_models.py layers --points 5
    python benchmarks/big_models.py llm --layers 12 --tokens 64 --sequences 2
    python benchmarks/big_models.py llm --layers 24 --sequences 2 --tokens 64 --grid 2 \\
        --rounds 1 --modes "all,all lean"      # the README's rows
    python benchmarks/big_models.py llm --hidden 1536 --layers 28 --heads 12 --kv-heads 2 \\
        --intermediate 8960 --tokens 512 --sequences 4 --device cuda   # Qwen2.5-1.5B-shaped

* ``shard``: the same GPT-2 shape, every tensor moving, its engine sharded by FSDP2 over
  ``--procs`` ranks (``shard=True``; the script starts ``torchrun`` itself, gloo on the CPU,
  NCCL with ``--device cuda``) beside the unsharded engine in one process: the tensor bytes
  each engine holds for the parameters (flat buffer, its narrow copy, δ, η, and θ* where it is
  not the model's own tensors), each rank's peak resident set, the time per point (the ranks
  share the evaluation batches: ``--batch`` sequences each), and the largest relative loss
  difference between the two.

    python benchmarks/big_models.py shard --procs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lossland.core import synchronize
from lossland.directions import lean_directions, random_directions
from lossland.engine import Engine, EngineOptions, causal_lm, eval_data
from lossland.run._layers import block_params

Batches = list[dict[str, Tensor]]


def token_batches(vocab: int, sequences: int, tokens: int, *, seed: int = 1) -> Batches:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (sequences, tokens), generator=g)
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}]


def median_seconds(
    fn: Callable[[], object],
    rounds: int,
    device: torch.device,
    reduce: Callable[[list[float]], float] = statistics.median,
) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return reduce(times)


def engine_for(
    model: nn.Module, batches: Batches, params: Any, mode: str, device: torch.device, **kw: Any
) -> Engine:
    regenerate = None
    if kw.get("memory") == "lean":  # directions redrawn at every point
        d, regenerate = lean_directions(
            model, seed=0, norm="filter", ignore="biasbn", ndim=2, params=params
        )
    else:
        d = random_directions(model, params=params, seed=0)
    data = eval_data(batches, batch_size=len(batches[0]["input_ids"]), device=device, mode=mode)  # type: ignore[arg-type]
    options = EngineOptions(device=device, precision=kw.get("precision", "fp32"))
    return Engine(
        model,
        [d.x, d.y],  # type: ignore[list-item]
        data,
        evaluator=causal_lm(),
        regenerate=regenerate,
        options=options,
    )


def per_point(
    engine: Engine,
    points: int,
    rounds: int,
    device: torch.device,
    reduce: Callable[[list[float]], float] = statistics.median,
) -> tuple[float, Any]:
    """Median (``reduce``) seconds per point over ``rounds`` rows of ``points`` (a first row
    records)."""
    xs, ys = np.linspace(-1, 1, points), np.zeros(1)
    mask = np.ones((1, points), dtype=bool)
    stats: list[Any] = []

    def row() -> None:
        stats[:] = [b.stats for b in engine.rows(xs, ys, mask)]

    return median_seconds(row, rounds, device, reduce) / points, np.concatenate(stats)


def gpt2(args: argparse.Namespace, device: torch.device) -> nn.Module:
    """A 12-block GPT-2 shape from a config, random init (seed 0)."""
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=12,
        n_embd=args.width,
        n_head=args.width // 64,
        vocab_size=args.vocab,
        n_positions=args.tokens,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="sdpa",
    )
    return transformers.GPT2LMHeadModel(config).eval().to(device)


def suffix_section(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    model = gpt2(args, device)
    batches = token_batches(args.vocab, args.sequences, args.tokens)
    last = "transformer.h.11.*"
    on_device = [{k: v.to(device) for k, v in b.items()} for b in batches]

    def bare() -> None:
        with torch.inference_mode():
            model(**on_device[0])

    forward = median_seconds(bare, args.rounds, device)
    fast, replayed = per_point(
        engine_for(model, batches, last, "cached", device), 9, args.rounds, device
    )
    full, every = per_point(
        engine_for(model, batches, last, "streamed", device), 9, args.rounds, device
    )
    loss = 0  # column of loss_sum
    diff = float(np.max(np.abs(replayed[:, loss] - every[:, loss]) / np.abs(every[:, loss])))
    params = sum(p.numel() for p in model.parameters())
    print(
        f"\n12-block GPT-2-shaped, width {args.width}, vocab {args.vocab}, "
        f"{params / 1e6:.1f} M parameters, {args.sequences}×{args.tokens} tokens, {device}; "
        "last block moving\n"
    )
    print("| path | ms per point | × bare forward |\n| --- | ---: | ---: |")
    for name, seconds in (
        ("bare forward (model(**batch))", forward),
        ("lossland, prefix replayed (cached data)", fast),
        ("lossland, every block (streamed data)", full),
    ):
        print(f"| {name} | {1e3 * seconds:.1f} | {seconds / forward:.2f}× |")
    verdict = "met" if fast / forward <= 0.25 and diff <= 1e-6 else "NOT met"
    print(
        f"\nreplayed vs full: max relative loss difference {diff:.1e}; "
        f"target ≤ 0.25× and ≤ 1e-6: {verdict}"
    )


def layers_section(args: argparse.Namespace) -> None:
    """One call, one line per block; then each block's engine per point (the fastest of
    ``--rounds`` rows of 9 points after the row that records), each next to the fastest of
    ``--rounds`` bare forwards timed just before it: the fastest, as a shared machine's bursts
    of load only ever add time."""
    import lossland

    device = torch.device(args.device)
    model = gpt2(args, device)
    batches = token_batches(args.vocab, args.sequences, args.tokens)
    on_device = [{k: v.to(device) for k, v in b.items()} for b in batches]

    def bare() -> None:
        with torch.inference_mode():
            model(**on_device[0])

    start = time.perf_counter()
    s = lossland.surface(
        model,
        batches,
        params_per_layer="auto",
        x=f"-1:1:{args.points}",
        evaluator=causal_lm(),
        device=str(device),
        progress=False,
    )
    total = time.perf_counter() - start
    assert s.stack is not None
    forward = median_seconds(bare, args.rounds, device, min)
    print(
        f"\n12-block GPT-2-shaped, width {args.width}, vocab {args.vocab}, "
        f"{args.sequences}×{args.tokens} tokens, {device}\n\none call "
        f"(params_per_layer='auto', a line of {args.points} points per block): {total:.1f} s "
        f"for {12 * args.points} points, {total / (12 * args.points) / forward:.2f}× a bare "
        f"forward ({1e3 * forward:.1f} ms) per point, setup and measures included\n"
    )
    print(
        "| block | ms per point | bare forward, ms | × bare forward | (12 − k)/12 |\n"
        "| --- | ---: | ---: | ---: | ---: |"
    )
    for k, (name, attrs) in enumerate(zip(s.stack.layers, s.stack.attrs, strict=True)):
        forward = median_seconds(bare, args.rounds, device, min)
        engine = engine_for(model, batches, block_params(attrs["params"]), "cached", device)
        seconds, _ = per_point(engine, 9, args.rounds, device, min)
        del engine
        print(
            f"| {name} | {1e3 * seconds:.1f} | {1e3 * forward:.1f} | {seconds / forward:.2f}× "
            f"| {(12 - k) / 12:.2f} |"
        )


# --- shard: FSDP2 under torchrun -------------------------------------------------------------


def held_bytes(engine: Engine, model: nn.Module) -> int:
    """Bytes of the tensors ``engine`` holds for the parameters: its flat buffer (and the
    network's narrow copy), δ, η, θ* where it is not ``model``'s own, and FSDP's local shards
    that are not views of the flat buffer (none when every tensor moves)."""
    own = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {engine.flat.untyped_storage().data_ptr()}
    total = engine.flat.nbytes
    extra = [engine.weights, engine.dx, *([engine.dy] if engine.dy is not None else [])]
    extra += [getattr(p, "_local_tensor", p) for p in engine.net.parameters()]
    for t in [*extra, *engine.theta]:
        storage = t.untyped_storage().data_ptr()
        if storage not in seen and storage not in own:
            seen.add(storage)
            total += t.untyped_storage().nbytes()
    return total


def shard_section(args: argparse.Namespace, argv: list[str]) -> None:
    """Under torchrun: every rank builds the sharded engine; rank 0 also the unsharded one."""
    import resource

    import torch.distributed as dist

    if "RANK" not in os.environ:  # start the ranks: each part in fresh processes
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc_per_node", str(args.procs), os.path.abspath(__file__), *argv]
        for part in ("engines", "shard", "rows"):
            if part == "shard":
                print(
                    f"\nlossland.surface, 3×3, {args.procs} processes, each part in fresh "
                    "ones: host memory the run adds per process (attrs['memory']: RSS peak − "
                    "RSS at its start; every process draws the whole directions)\n"
                )
                print("| run | process | while evaluating (× param bytes) | whole run |")
                print("| --- | --- | ---: | ---: |")
            sys.stdout.flush()
            if subprocess.run([*command, "--part", part], check=False).returncode:
                raise SystemExit(f"{part} failed")
        return
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = gpt2(args, device)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    # --batch sequences per evaluation batch: the ranks of the group share the batches
    whole = token_batches(args.vocab, args.sequences, args.tokens)[0]
    batches = [
        {k: v[i : i + args.batch] for k, v in whole.items()}
        for i in range(0, args.sequences, args.batch)
    ]
    if args.part != "engines":
        points, whole = run_added(model, batches, args, args.part == "shard")
        runs: list[Any] = [None] * world
        dist.all_gather_object(runs, (points, whole))
        name = "--shard" if args.part == "shard" else "rows split (unsharded)"
        for r, (points, whole) in enumerate(runs if rank == 0 else []):
            print(
                f"| {name} | rank {r} | {points / 2**20:,.0f} MiB ({points / params:.2f}×) | "
                f"{whole / 2**20:,.0f} MiB ({whole / params:.2f}×) |"
            )
        return
    d = random_directions(model, seed=0)
    data = eval_data(batches, batch_size=args.batch, device=device)  # type: ignore[arg-type]

    def engine(shard: int) -> Engine:
        options = EngineOptions(device=device, shard=shard)
        return Engine(model, [d.x, d.y], data, evaluator=causal_lm(), options=options)  # type: ignore[list-item]

    sharded = engine(world)
    seconds, stats = per_point(sharded, 5, args.rounds, device)
    row = [held_bytes(sharded, model), seconds, stats[:, 0].tolist()]
    del sharded
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows: list[Any] = [None] * world
    dist.all_gather_object(rows, [*row, rss])
    if rank == 0:
        alone = engine(1)
        one_seconds, one_stats = per_point(alone, 5, args.rounds, device)
        one = held_bytes(alone, model)
        del alone
    dist.barrier()
    if rank != 0:
        return
    diff = max(
        float(np.max(np.abs(np.array(r[2]) - one_stats[:, 0]) / np.abs(one_stats[:, 0])))
        for r in rows
    )
    print(
        f"\n12-block GPT-2-shaped, width {args.width}, vocab {args.vocab}, "
        f"{params / 2**20:.1f} MiB fp32 parameters, {args.sequences}×{args.tokens} tokens "
        f"in batches of {args.batch}, "
        f"{device.type}; every tensor moving; {world} ranks share one network (FSDP2)\n"
    )
    print(
        "| engine | tensor bytes held (× param bytes) | × one process | peak RSS | ms per point |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    alone_ms = 1e3 * one_seconds
    print(
        f"| one process | {one / 2**20:,.1f} MiB ({one / params:.2f}×) | 1.00 | | {alone_ms:,.0f} |"
    )
    for r, (held, secs, _, peak) in enumerate(rows):
        print(
            f"| rank {r} of {world} | {held / 2**20:,.1f} MiB ({held / params:.2f}×) | "
            f"{held / one:.2f} | {peak / 2**20:,.0f} MiB | {1e3 * secs:,.0f} |"
        )
    print(f"\nsharded vs one process: max relative loss difference {diff:.1e}")


def run_added(
    model: nn.Module, batches: Batches, args: argparse.Namespace, shard: bool
) -> tuple[int, int]:
    """Host bytes a 3×3 ``lossland.surface`` adds on this process: while evaluating, whole run."""
    import lossland

    result = lossland.surface(
        model,
        batches,
        x="-1:1:3",
        y="-1:1:3",
        evaluator=causal_lm(),
        device=args.device,  # under torchrun "cuda" means each process's own GPU
        batch_size=args.batch,
        shard=shard,
        progress=False,
    )
    m = result.attrs["memory"]
    start = m["host_start_bytes"]
    return (m["host_points_peak_bytes"] or m["host_peak_bytes"]) - start, m[
        "host_peak_bytes"
    ] - start


# --- llm: a Qwen2-shaped decoder, each mode in its own process --------------------------------


def qwen2(args: argparse.Namespace) -> nn.Module:
    import transformers

    config = transformers.Qwen2Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        tie_word_embeddings=True,
        torch_dtype="bfloat16",
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return transformers.Qwen2ForCausalLM(config).to(torch.bfloat16).eval()


def child(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One mode in this (fresh) process: memory from a surface, then time per point."""
    from lossland.run import surface

    device = torch.device(args.device)
    model = qwen2(args).to(device)
    last = f"model.layers.{args.layers - 1}.*"
    params: Any = {"all": None, "all lean": None, "last block": last}.get(mode)
    memory_mode = "lean" if mode.endswith("lean") else "normal"
    if mode == "lora":
        import peft

        config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
        model = peft.get_peft_model(model, config).to(torch.bfloat16).eval()
        params = "trainable"
    batches = token_batches(args.vocab, args.sequences, args.tokens)
    spec = f"-1:1:{args.grid}"
    started = time.perf_counter()
    s = surface(
        model,
        batches,
        x=spec,
        y=spec,
        params=params,
        evaluator=causal_lm(),
        precision="bf16",
        memory=memory_mode,
        device=args.device,
        progress=False,
        allow_large=True,
    )
    seconds = time.perf_counter() - started
    memory = dict(s.attrs["memory"])
    chosen = set(s.attrs.get("params", []))
    moving = sum(
        p.numel() * p.element_size()
        for n, p in model.named_parameters()
        if params is None or n in chosen
    )
    del s
    engine = engine_for(
        model, batches, params, "cached", device, precision="bf16", memory=memory_mode
    )
    point, _ = per_point(engine, 3, args.rounds, device)
    return {
        "mode": mode,
        "memory": memory,
        "surface_seconds": seconds,
        "point_seconds": point,
        "moving_bytes": moving,
    }


def run_child(mode: str, argv: list[str]) -> dict[str, Any]:
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(os.path.dirname(here), "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, os.path.abspath(__file__), *argv, "--child", mode]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def llm_section(args: argparse.Namespace, argv: list[str]) -> None:
    model = qwen2(args)
    params = sum(p.numel() for p in model.parameters())
    del model
    print(
        f"\nQwen2-shaped decoder: hidden {args.hidden}, {args.layers} layers, "
        f"vocab {args.vocab}, {params / 1e9:.3f} B parameters "
        f"(bf16: {params * 2 / 2**30:.2f} GiB), {args.sequences}×{args.tokens} tokens, "
        f"{args.grid}×{args.grid} grid, {args.device}\n"
    )
    print(
        "| mode | moving MiB | host added while evaluating (× param bytes) | (× moving bytes) "
        "| whole run, incl. an fp32 check where one runs (× param bytes) "
        "| device while evaluating | "
        "ms per point | surface s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode in args.modes.split(","):
        r = run_child(mode, argv)
        m = r["memory"]
        p = m["param_bytes"]
        added = m["host_peak_bytes"] - m["host_start_bytes"]
        points = (m["host_points_peak_bytes"] or m["host_peak_bytes"]) - m["host_start_bytes"]
        device = m["device_points_peak_bytes"]
        dev = "n/a" if device is None else f"{device / 2**20:,.0f} MiB ({device / p:.2f}×)"
        print(
            f"| {mode} | {r['moving_bytes'] / 2**20:,.1f} | {points / 2**20:,.0f} MiB "
            f"({points / p:.2f}×) | {points / r['moving_bytes']:.2f}× | {added / p:.2f}× | "
            f"{dev} | {1e3 * r['point_seconds']:,.0f} | {r['surface_seconds']:.1f} |"
        )


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("section", choices=["suffix", "layers", "llm", "shard"])
    p.add_argument("--procs", type=int, default=2, help="shard: ranks sharing the network")
    p.add_argument("--batch", type=int, default=1, help="shard: sequences per batch")
    p.add_argument("--part", default="engines", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--width", type=int, default=256, help="suffix: GPT-2 width")
    p.add_argument("--vocab", type=int, default=None, help="default 2048 (suffix), 151936 (llm)")
    p.add_argument("--hidden", type=int, default=896)
    p.add_argument("--intermediate", type=int, default=4864)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--heads", type=int, default=14)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--grid", type=int, default=3)
    p.add_argument("--points", type=int, default=5, help="layers: points per block")
    p.add_argument("--modes", default="all,all lean,last block,lora")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.vocab is None:
        args.vocab = 151936 if args.section == "llm" else 2048
    return args


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    torch.set_num_threads(int(os.environ.get("THREADS", torch.get_num_threads())))
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    if args.section == "suffix":
        suffix_section(args)
    elif args.section == "layers":
        layers_section(args)
    elif args.section == "shard":
        shard_section(args, argv)
    else:
        llm_section(args, [a for a in argv if a != "--child"])


if __name__ == "__main__":
    main()
