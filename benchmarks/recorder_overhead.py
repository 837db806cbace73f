"""The recorder's overhead on the demo model (``lossland demo``'s "small" CNN, Adam, batch 64).

The same training steps run three times: without a recorder, with the default recorder
(``every=10``, a 21-point line, λ_max by 20 Lanczos steps, the 10 % budget) and with the
budget off (every chosen step recorded); the evaluation set is 256 training images, as the
demo's. Prints the wall times, the overhead each way (wall-clock difference, and the recorder's
own measurement) and how many records were made or skipped.

    python benchmarks/recorder_overhead.py [--steps 100 --every 10 --threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

import lossland
from lossland.errors import LosslandWarning
from lossland.zoo import build_model, model_spec


def run(args: argparse.Namespace, folder: Path, budget: float | None) -> tuple[float, str]:
    """Seconds for ``args.steps`` training steps (with a recorder unless ``budget`` is None)."""
    images, labels = lossland.load_fashion_mnist("train")
    torch.manual_seed(0)
    model = build_model(model_spec("small"))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    evaluation = (images[:256], labels[:256])
    rec = None
    if budget is not None:
        rec = lossland.Recorder(
            model, evaluation, out=folder / f"rec_{budget}.h5", every=args.every, budget=budget
        )
    started = time.perf_counter()
    for step in range(args.steps + 1):
        if rec is not None:
            rec.step(step)
        if step == args.steps:
            break
        at = step * 64 % (len(labels) - 64)
        loss = F.cross_entropy(model(images[at : at + 64]), labels[at : at + 64])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    seconds = time.perf_counter() - started
    if rec is None:
        return seconds, "no recorder"
    rec.close()
    return seconds, rec.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", LosslandWarning)  # the budget's note: reported below
        plain, _ = run(args, Path(tmp), None)
        print(f"{args.steps} steps without a recorder: {plain:.1f} s", flush=True)
        for budget in (0.1, 0.0):
            seconds, summary = run(args, Path(tmp), budget)
            label = "default budget 10 %" if budget else "no budget"
            print(
                f"with the recorder ({label}): {seconds:.1f} s, wall-clock overhead "
                f"{(seconds - plain) / plain:.1%}; {summary}",
                flush=True,
            )


if __name__ == "__main__":
    main()
