"""Two MLPs (784-512-512-10) trained from different seeds on Fashion-MNIST: the loss barrier on
the straight line between them, before and after aligning B's hidden units to A's (Ainsworth
et al. 2023, "Git Re-Basin"), and along a one-bend Bézier curve trained between them (Garipov
et al. 2018).

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
Then the curve and the three paths compared (each barrier ± its standard error), with the
profiles figure and the plane through A, the curve's midpoint and B:

    lossland.curve(model_a, model_b, lossland.load_fashion_mnist("train"), epochs=2, ...)
    (or: lossland curve mlp_a.safetensors mlp_b.safetensors -o curve_ab.safetensors
     --samples all --epochs 2 --batch-size 128)
    lossland interpolate mlp_a.safetensors mlp_b.safetensors --align
        --curve curve_ab.safetensors -o compare_train.h5 --samples 10000   (and --split test)
    lossland interpolate ... --samples 1000 --x 0:1:9 --plane curve_plane.h5
    lossland plot compare_train.h5; lossland plot curve_plane.h5

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
from lossland.analysis import barrier, comparison

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
    parser.add_argument("--curve-epochs", type=int, default=2, help="epochs of the curve's bend")
    parser.add_argument("--compare-samples", default="10000", help="samples per split compared")
    parser.add_argument("--points", type=int, default=21, help="points of t compared")
    parser.add_argument("--no-lines", action="store_true", help="skip the table of lines")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))  # the checkpoints' factory is this file
    started = time.perf_counter()
    a, b = trained(0, args.epochs), trained(1, args.epochs)
    if not args.no_lines:
        ends = {"B": b}
        for method, extra in (("weights", []), ("activations", ["--samples", "10000"])):
            out = Path(__file__).parent / f"mlp_b_{method}.safetensors"
            printed = lossland_command(
                "align", str(a), str(b), "-o", str(out), "--model", MODEL, "--method", method,
                "--overwrite", *extra,
            )  # fmt: skip
            print(printed.strip())
            ends[f"B aligned ({method})"] = out
        lines_table(a, ends, args.samples)
    curve_section(a, b, args.curve_epochs, args.compare_samples, args.points)
    print(f"\n{time.perf_counter() - started:.0f} s")


def lines_table(a: Path, ends: dict[str, Path], samples: str) -> None:
    print(
        f"\nbarrier = max L on the line A→B − max(L(A), L(B)); above chord = max of L(t) − "
        f"((1−t)·L(A) + t·L(B)); {samples} samples, 21 points and the refined maximum"
    )
    print(f"{'line':<28} {'split':<6} {'L(A)':>7} {'L(B)':>7} {'L(0.5)':>7} {'max L':>7} "
          f"{'barrier':>8} {'above chord':>11} {'min acc':>8}")  # fmt: skip
    for label, end in ends.items():
        for split in ("train", "test"):
            name = f"line_{end.stem}_{split}.h5"
            surface = line(a, end, name, split, samples)
            found = barrier(surface)
            assert found is not None
            middle = float(surface.loss[abs(surface.x - 0.5).argmin()])
            print(
                f"{'A → ' + label:<28} {split:<6} {found.start_loss:7.4f} {found.end_loss:7.4f} "
                f"{middle:7.4f} {found.max_loss:7.4f} {found.height:8.4f} "
                f"{found.height_linear:11.4f} {found.min_accuracy or float('nan'):7.2f}%"
            )


def curve_section(a: Path, b: Path, epochs: int, samples: str, points: int) -> None:
    """A one-bend Bézier curve trained between A and B on all the training images, then the
    straight line, the line to B aligned and the curve compared on each split (barrier ± SE),
    and the plane through A, the curve's midpoint and B."""
    started = time.perf_counter()
    folder = Path(__file__).parent
    model_a, _ = lossland.load_model(a, spec=MODEL)
    model_b, _ = lossland.load_model(b, spec=MODEL)
    result = lossland.curve(
        model_a, model_b, lossland.load_fashion_mnist("train"), kind="bezier", bends=1,
        epochs=epochs, batch_size=128, lr=1e-3, device="cpu", out=folder / "curve_ab.safetensors",
    )  # fmt: skip
    print(f"\n{result.summary()}\n(in {time.perf_counter() - started:.0f} s)")
    common = ["--model", MODEL, "--device", "cpu", "--no-progress", "--overwrite", "--align",
              "--curve", "curve_ab.safetensors"]  # fmt: skip
    print(f"\n{samples} samples per split, {points} points; barrier = max L − max(L(A), L(B))")
    print(f"{'path':<20} {'split':<6} {'L(A)':>7} {'L(B)':>7} {'max L':>7} {'at t':>5} "
          f"{'barrier':>8} {'± SE':>7} {'min acc':>8}")  # fmt: skip
    for split in ("train", "test"):
        out = f"compare_{split}.h5"
        lossland_command("interpolate", str(a), str(b), "-o", out, "--split", split,
                         "--samples", samples, "--x", f"0:1:{points}", *common)  # fmt: skip
        for p in comparison(lossland.load(str(folder / out)).attrs):
            print(
                f"{p.name:<20} {split:<6} {p.loss[0]:7.4f} {p.loss[-1]:7.4f} "
                f"{float(p.loss.max()):7.4f} {p.at:5.2f} {p.barrier:8.4f} {p.barrier_sem:7.4f} "
                f"{float(p.acc.min()):7.2f}%"
            )
    plane = ["--samples", "1000", "--x", "0:1:9", "--plane", "curve_plane.h5"]
    lossland_command("interpolate", str(a), str(b), "-o", "compare_plane_line.h5", *plane, *common)
    for name in ("compare_train.h5", "curve_plane.h5"):
        lossland_command("plot", name, "--overwrite")
    print(f"(curve and comparison in {time.perf_counter() - started:.0f} s; figures beside this)")


if __name__ == "__main__":
    main()
