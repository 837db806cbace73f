"""Two MLPs (784-512-512-10) trained from different seeds on Fashion-MNIST: the loss barrier on
the straight line between them, before and after aligning B's hidden units to A's (Ainsworth
et al. 2023, "Git Re-Basin").

    cd examples && python align_mlps.py                # trains A and B (a few epochs on CPU)
    python align_mlps.py --epochs 3 --samples all     # the defaults

Steps (each a lossland command; the checkpoints name this file's factory, so every command is
told ``--model align_mlps:make_mlp``, the current folder being importable):

    lossland align mlp_a.safetensors mlp_b.safetensors -o mlp_b_weights.safetensors
    lossland align mlp_a.safetensors mlp_b.safetensors -o mlp_b_activations.safetensors \\
        --method activations --samples 10000
    lossland interpolate mlp_a.safetensors mlp_b.safetensors -o line_b.h5 --split train
    lossland interpolate mlp_a.safetensors mlp_b_weights.safetensors -o line_b_weights.h5
    ...                                                   (and on the test split)

then prints each line's barrier: the largest loss on the line minus the larger endpoint loss.
Fashion-MNIST comes from $LOSSLAND_DATA (or lossland's cache).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from torch import nn

import lossland
from lossland.analysis import barrier

MODEL = "align_mlps:make_mlp"


def make_mlp(hidden: int = 512) -> nn.Module:
    """784 → hidden → hidden → 10 with ReLUs (Ainsworth et al.'s MNIST MLP: three such layers)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def lossland_command(*args: str) -> str:
    """``lossland ARGS`` in this folder; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "lossland", *args],
        cwd=Path(__file__).parent,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def trained(seed: int, epochs: int) -> Path:
    path = Path(__file__).parent / f"mlp_{'ab'[seed]}.safetensors"
    if not path.exists():
        options = lossland.TrainOptions(epochs=epochs, seed=seed, device="cpu")
        result = lossland.train(
            lossland.ModelSpec(MODEL), options=options, out=path, progress=False
        )
        print(result.summary())
    return path


def line(a: Path, b: Path, out: str, split: str, samples: str) -> lossland.Surface:
    lossland_command(
        "interpolate", str(a), str(b), "-o", out, "--model", MODEL, "--split", split,
        "--samples", samples, "--x", "0:1:21", "--device", "cpu", "--no-progress", "--overwrite",
    )  # fmt: skip
    return lossland.load(str(Path(__file__).parent / out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", default="all", help="evaluation samples per split, or all")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))  # the checkpoints' factory is this file
    started = time.perf_counter()
    a, b = trained(0, args.epochs), trained(1, args.epochs)
    ends = {"B": b}
    for method, extra in (("weights", []), ("activations", ["--samples", "10000"])):
        out = Path(__file__).parent / f"mlp_b_{method}.safetensors"
        printed = lossland_command(
            "align", str(a), str(b), "-o", str(out), "--model", MODEL, "--method", method,
            "--overwrite", *extra,
        )  # fmt: skip
        print(printed.strip())
        ends[f"B aligned ({method})"] = out
    print(
        f"\nbarrier = max L on the line A→B − max(L(A), L(B)); above chord = max of L(t) − "
        f"((1−t)·L(A) + t·L(B)); {args.samples} samples, 21 points and the refined maximum"
    )
    print(f"{'line':<28} {'split':<6} {'L(A)':>7} {'L(B)':>7} {'L(0.5)':>7} {'max L':>7} "
          f"{'barrier':>8} {'above chord':>11} {'min acc':>8}")  # fmt: skip
    for label, end in ends.items():
        for split in ("train", "test"):
            name = f"line_{end.stem}_{split}.h5"
            surface = line(a, end, name, split, args.samples)
            found = barrier(surface)
            assert found is not None
            middle = float(surface.loss[abs(surface.x - 0.5).argmin()])
            print(
                f"{'A → ' + label:<28} {split:<6} {found.start_loss:7.4f} {found.end_loss:7.4f} "
                f"{middle:7.4f} {found.max_loss:7.4f} {found.height:8.4f} "
                f"{found.height_linear:11.4f} {found.min_accuracy or float('nan'):7.2f}%"
            )
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
