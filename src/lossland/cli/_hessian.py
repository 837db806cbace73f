"""``lossland hessian CHECKPOINT``: top Hessian eigenvalues (Lanczos) and the trace (Hutchinson)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lossland.cli._args import Command, default_of, flag
from lossland.cli._common import CheckpointModelArgs, SampleArgs, note
from lossland.core import resolve_device
from lossland.directions import DTYPES, Which, hessian_report, save_eigen_directions
from lossland.io import check_output
from lossland.run import resolve_loss


def _default(name: str) -> object:
    return default_of(hessian_report, name)


@dataclass(kw_only=True)
class HessianArgs(CheckpointModelArgs, SampleArgs):
    """Top Hessian eigenvalues (Lanczos) and the trace (Hutchinson) of the loss at a checkpoint."""

    checkpoint: Path = flag(doc="trained checkpoint", positional=True)
    k: int = flag(_default("k"), doc="number of top eigenvalues")
    which: Which = flag(
        _default("which"), doc="largest: most positive eigenvalues; magnitude: largest |λ|"
    )
    probes: int = flag(
        _default("probes"), doc="Rademacher probes for the Hutchinson trace (0: none)"
    )
    iterations: int = flag(
        _default("iterations"), doc="most Lanczos iterations (memory: one vector each)"
    )
    tol: float = flag(_default("tol"), doc="stop when the residual bounds are below tol·|λ|max")
    seed: int = flag(_default("seed"), doc="seed for the sample subset, start vector and probes")
    batch_size: int = flag(_default("batch_size"), doc="samples per Hessian-vector-product batch")
    device: str = flag("auto", doc="cpu, cuda, cuda:1, mps or auto")
    dtype: Literal["float32", "float64"] = flag("float32", doc="compute dtype")
    save_directions: Path | None = flag(
        None, doc="save the top one or two eigenvectors as directions (for surface --directions)"
    )
    overwrite: bool = flag(False, doc="replace an existing --save-directions file")


def run(args: HessianArgs) -> int:
    if args.save_directions is not None:  # before any work
        check_output(
            args.save_directions,
            overwrite=args.overwrite,
            inputs=[args.checkpoint],
            name="save_directions",
        )
    model, _ = args.load(args.checkpoint)
    report, op = hessian_report(
        model,
        args.data(args.seed),
        k=args.k,
        probes=args.probes,
        loss=resolve_loss(args.loss)[0],
        batch_size=args.batch_size,
        device=resolve_device(args.device),
        dtype=DTYPES[args.dtype],
        iterations=args.iterations,
        tol=args.tol,
        which=args.which,
        seed=args.seed,
    )
    if args.save_directions is not None:
        save_eigen_directions(op, report, args.save_directions, model, source=str(args.checkpoint))
        note(f"directions (top {min(args.k, 2)} eigenvectors) → {args.save_directions}")
    print(report.summary(header=f"checkpoint {args.checkpoint}"))
    return 0


COMMAND = Command("hessian", (HessianArgs,), run)
