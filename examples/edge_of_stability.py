"""Edge of stability (Cohen et al., ICLR 2021) with ``lossland.Recorder``.

Full-batch gradient descent at step size η on a small tanh MLP (784-W-W-10) fitting a
Fashion-MNIST subset with the squared loss: the top Hessian eigenvalue λ_max rises
("progressive sharpening") until it reaches about 2/η, then hovers there while the loss keeps
falling, non-monotonically. The recorder measures λ_max (Lanczos through lossland's evaluation
contract), a 1-D slice and its sharpness every ``--every`` steps into one recording per step
size; this script then draws λ_max over the steps against 2/η and prints the plateau.

    cd examples && python edge_of_stability.py                  # η = 2/30 and 2/40
    python edge_of_stability.py --steps 800 --samples 2000 --lrs 0.0667 0.05

Writes ``eos/eos_lr<η>.h5`` (``lossland info``, ``plot`` and ``view`` read them) and
``eos/edge_of_stability.png``. Fashion-MNIST comes from $LOSSLAND_DATA (or lossland's cache).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import lossland


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample squared loss against one-hot targets: ½‖f(x) − e_y‖² (Cohen et al.'s MSE)."""
    return 0.5 * ((out - nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)) ** 2).sum(-1)


def make_mlp(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, width),
        nn.Tanh(),
        nn.Linear(width, width),
        nn.Tanh(),
        nn.Linear(width, 10),
    )


def run(lr: float, data: tuple[torch.Tensor, torch.Tensor], args: argparse.Namespace) -> Path:
    """Full-batch GD at step size ``lr`` from the same initialization, recorded."""
    torch.manual_seed(args.seed)
    model = make_mlp(args.width)
    out = args.out / f"eos_lr{lr:g}.h5"
    rec = lossland.Recorder(
        model,
        data,
        out=out,
        loss=mse,
        lr=lr,
        every=args.every,
        x="-1:1:11",
        hessian_iterations=args.lanczos,
        budget=0,  # record every chosen step: this is the measurement
        batch_size=len(data[1]),
        overwrite=True,
    )
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    started = time.perf_counter()
    for step in range(args.steps + 1):
        values = rec.step(step)
        if values is not None and step % (args.every * 5) == 0:
            print(
                f"η={lr:g} step {step:5d}  loss {values['centre_loss']:.4f}  "
                f"λ_max {values['lambda_max']:.2f}  (2/η = {2 / lr:.1f})",
                flush=True,
            )
        if step == args.steps:
            break
        opt.zero_grad()
        mse(model(data[0]), data[1]).mean().backward()
        opt.step()
    rec.close()
    print(f"η={lr:g}: {rec.summary()} ({time.perf_counter() - started:.0f} s)", flush=True)
    return out


def plateau(recording: lossland.Recording, lr: float) -> tuple[int | None, float, float]:
    """The first step where λ_max reaches 90 % of 2/η, and λ_max's mean and spread (std) over
    the records after it, as multiples of 2/η."""
    lam = recording.scalars["lambda_max"] / (2 / lr)
    reached = np.flatnonzero(lam >= 0.9)
    if not reached.size:
        return None, float("nan"), float("nan")
    after = lam[reached[0] :]
    return int(recording.steps[reached[0]]), float(after.mean()), float(after.std())


def figure(files: dict[float, Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for (lr, file), colour in zip(files.items(), ("C0", "C1", "C2", "C3"), strict=False):
        rec = lossland.Recording.load(file)
        top.plot(rec.steps, rec.scalars["lambda_max"], color=colour, label=f"η = {lr:g}")
        top.axhline(2 / lr, color=colour, linestyle="--", linewidth=1, label=f"2/η = {2 / lr:.1f}")
        bottom.plot(rec.steps, rec.scalars["centre_loss"], color=colour)
    top.set_ylabel("λ_max (top Hessian eigenvalue)")
    top.legend(fontsize=8)
    top.set_title("Edge of stability: full-batch GD on a Fashion-MNIST subset")
    bottom.set_ylabel("training loss (MSE)")
    bottom.set_yscale("log")
    bottom.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[2 / 30, 2 / 40])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--every", type=int, default=40)
    parser.add_argument("--lanczos", type=int, default=12, help="Lanczos iterations per record")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("eos"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    images, labels = lossland.load_fashion_mnist("train")
    pick = torch.Generator().manual_seed(args.seed)
    index = torch.randperm(len(labels), generator=pick)[: args.samples]
    data = (images[index], labels[index])
    files = {lr: run(lr, data, args) for lr in args.lrs}
    figure(files, args.out / "edge_of_stability.png")
    print(f"figure: {args.out / 'edge_of_stability.png'}")
    for lr, file in files.items():
        step, mean, spread = plateau(lossland.Recording.load(file), lr)
        where = "never reached 0.9·2/η" if step is None else f"reached 0.9·2/η at step {step}"
        print(f"η={lr:g} (2/η = {2 / lr:.1f}): {where}; after it λ_max/(2/η) = "
              f"{mean:.3f} ± {spread:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
